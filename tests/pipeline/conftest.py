"""Fixtures for the span component tests."""
import spacy
import pytest
from spacy.language import Language

from span_helpers import component_config


@pytest.fixture
def blank_ner(tiny_bert_dir) -> Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("spanbert_ner", config=component_config(tiny_bert_dir))
    return nlp

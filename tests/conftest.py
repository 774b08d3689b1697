"""Shared fixtures: a tiny random BERT with an English word vocabulary, and a tiny English corpus.

Both are built in a temporary directory on first use (no network): `tiny_bert_dir` holds config.json,
model.safetensors and a lower-casing BertTokenizerFast (vocab.txt, tokenizer.json, tokenizer_config.json).
The builder is tests/fixtures/tiny_bert.py's (the repository root is on sys.path through pyproject's `pythonpath`,
so the fixtures import as `tests.fixtures.*`).
"""
import os
import random
from pathlib import Path

import pytest

from tests.fixtures.tiny_bert import ADJECTIVES, DETERMINERS, NAMES, NOUNS, VERBS, build_tiny_bert

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def make_sentence(rng: random.Random) -> str:
    """A grammatical-looking sentence; some words take suffixes so words span several wordpieces."""
    def np_():
        noun = rng.choice(NOUNS) + ("s" if rng.random() < 0.2 else "")
        if rng.random() < 0.3:
            return rng.choice(NAMES).capitalize()
        return f"{rng.choice(DETERMINERS)} {rng.choice(ADJECTIVES)} {noun}"

    parts = [np_().capitalize() if not np_().istitle() else np_(), rng.choice(VERBS), np_()]
    if rng.random() < 0.5:
        parts += [rng.choice(["in", "at", "with", "after", "near"]), np_()]
    if rng.random() < 0.2:
        parts += [",", "and", "quickly" if rng.random() < 0.5 else "slowly", rng.choice(VERBS), np_()]
    return " ".join(parts).replace(" ,", ",") + "."


def write_corpus(path: Path, n_docs: int, seed: int = 0, sents_per_doc=(3, 9)) -> Path:
    """A .txt corpus: one sentence per line, a blank line between documents."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        docs.append("\n".join(make_sentence(rng) for _ in range(rng.randint(*sents_per_doc))))
    path.write_text("\n\n".join(docs) + "\n", encoding="utf8")
    return path


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """Path to a saved tiny random BertModel + BertTokenizerFast (lower-cased English vocab, 128 positions)."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert") / "model")


@pytest.fixture(scope="session")
def tiny_text_corpus(tmp_path_factory) -> Path:
    """Path to a small English .txt corpus (sentence per line, blank line between 40 documents)."""
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt", n_docs=40)


@pytest.fixture(scope="session")
def corpus_writer():
    """The corpus generator: `corpus_writer(path, n_docs, seed=0, sents_per_doc=(3, 9))` writes a .txt corpus."""
    return write_corpus

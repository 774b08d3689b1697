"""Helpers for the span component tests: pipelines on the shared tiny random BERT (`tiny_bert_dir`)."""
from typing import Callable, Dict, List, Tuple

import spacy
from spacy.language import Language
from spacy.training import Example
from spacy.util import fix_random_seed

# Small windows so that the 128-position tiny BERT is never overrun and long docs need many windows.
WINDOW, STRIDE = 32, 24

NER_DATA: List[Tuple[str, List[Tuple[int, int, str]]]] = [
    ("John saw the big dog in London .", [(0, 4, "PER"), (24, 30, "LOC")]),
    ("Mary liked Paris and Berlin .", [(0, 4, "PER"), (11, 16, "LOC"), (21, 27, "LOC")]),
    ("The company Google met the king .", [(12, 18, "ORG")]),
]


def component_config(bert_dir, **extra) -> Dict:
    """Config of a standalone component whose own tiny transformer uses strided windows."""
    model = {
        "hidden_width": 32,
        "tok2vec": {"name": str(bert_dir), "get_spans": {"window": WINDOW, "stride": STRIDE}},
    }
    model.update(extra.pop("model", {}))
    return {"model": model, **extra}


def ner_examples(nlp: Language, data=NER_DATA) -> List[Example]:
    return [Example.from_dict(nlp.make_doc(text), {"entities": ents}) for text, ents in data]


def train(nlp: Language, examples: List[Example], steps: int = 120, learn_rate: float = 2e-3) -> Dict[str, float]:
    """Overfit `examples` from a fixed seed; RETURNS the last losses."""
    fix_random_seed(0)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = learn_rate
    losses: Dict[str, float] = {}
    for _ in range(steps):
        losses = {}
        nlp.update(examples, sgd=optimizer, losses=losses)
    return losses


def ents(doc) -> List[Tuple[int, int, str]]:
    return [(e.start_char, e.end_char, e.label_) for e in doc.ents]


def assert_roundtrip(nlp: Language, factory: str, bert_dir, texts: List[str], key: str, read: Callable, tmp_path):
    """Through disk (spacy.load) and bytes (into a fresh pipeline), predictions and scores stay identical."""
    import numpy
    import spacy

    docs = list(nlp.pipe(texts))
    nlp.to_disk(tmp_path / "pipe")
    from_disk = spacy.load(tmp_path / "pipe")
    from_bytes = spacy.blank("en")
    from_bytes.add_pipe(factory, config=component_config(bert_dir))
    from_bytes.from_bytes(nlp.to_bytes())
    for text, doc in zip(texts, docs):
        for other in (from_disk(text), from_bytes(text)):
            assert read(other) == read(doc)
            numpy.testing.assert_allclose(other.spans[key].attrs["scores"], doc.spans[key].attrs["scores"], rtol=1e-5)

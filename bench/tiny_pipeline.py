"""A tiny trained `transformer` + `spanbert_ner` pipeline on bench/tiny_bert.py's random BERT, saved with its data.

Why: the quantization and `spacy benchmark speed` checks need a real saved pipeline (configs/ner.cfg's layout: a
shared SpanBERT.v3 transformer with case types, which the span component listens to) and a .spacy file, in seconds and offline; the tests
and `bench/quantize.py --quick` share this one builder.
"""
from pathlib import Path
from typing import Dict, List, Tuple

from bench.tiny_bert import build_tiny_bert

TEXTS: List[Tuple[str, List[Tuple[int, int, str]]]] = [
    ("John saw the big dog in London .", [(0, 4, "PER"), (24, 30, "LOC")]),
    ("Mary liked Paris and Berlin .", [(0, 4, "PER"), (11, 16, "LOC"), (21, 27, "LOC")]),
    ("The company Google met the king .", [(12, 18, "ORG")]),
    ("Anna Smith flew to Berlin after the storm .", [(0, 10, "PER"), (19, 25, "LOC")]),
]


def transformer_config(bert_dir: Path) -> Dict:
    """The shared transformer block of configs/ner.cfg, on the tiny BERT, with windows its 128 positions allow."""
    return {"model": {"@architectures": "spacy-spanbert.SpanBERT.v3", "name": str(bert_dir), "case_types": True,
                      "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 32,
                                    "stride": 24}}}


def build_tiny_ner_pipeline(work_dir: Path, steps: int = 40, seed: int = 0) -> Dict[str, Path]:
    """Train the tiny pipeline for `steps` updates; RETURNS paths: bert (encoder dir), pipeline, data (.spacy)."""
    import spacy
    from spacy.tokens import DocBin
    from spacy.training import Example
    from spacy.util import fix_random_seed

    work_dir = Path(work_dir)
    bert_dir = build_tiny_bert(work_dir / "bert", seed=seed)
    nlp = spacy.blank("en")
    nlp.add_pipe("transformer", config=transformer_config(bert_dir))
    nlp.add_pipe("spanbert_ner", config={"model": {
        "hidden_width": 32,
        "tok2vec": {"@architectures": "spacy-transformers.TransformerListener.v1", "grad_factor": 1.0,
                    "pooling": {"@layers": "reduce_mean.v1"}}}})
    examples = [Example.from_dict(nlp.make_doc(text), {"entities": ents}) for text, ents in TEXTS]
    fix_random_seed(seed)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 2e-3
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(work_dir / "pipeline")
    DocBin(docs=[eg.reference for eg in examples]).to_disk(work_dir / "data.spacy")
    return {"bert": bert_dir, "pipeline": work_dir / "pipeline", "data": work_dir / "data.spacy"}

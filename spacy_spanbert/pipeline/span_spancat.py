"""`spanbert_spancat`: multi-label span categorisation over boundary-scored spans; nested and overlapping spans.

A subclass of spaCy's `SpanCategorizer` through its public interface: its settings (threshold, `max_positive`,
`allow_overlap`), its `spans_{key}_p/r/f` scorer and its serialisation are spaCy's; the span model (logits from span
boundaries), the sigmoid cross-entropy loss and the decoding (`decode_spans`, spaCy's rules: labels at or above the
threshold, the best `max_positive` per span; with one per span and no overlap, the best spans first) are ours.
"""
from typing import Callable, Iterable, List, Optional, Tuple

import numpy

from spacy.language import Language
from spacy.tokens import Doc, Span, SpanGroup
from spacy.vocab import Vocab
from thinc.api import Model
from thinc.types import Floats2d, Ragged

from .base import SHARED_DEFAULT_CONFIG, SpanBoundaryPipe

DEFAULT_SPANS_KEY = "sc"


@Language.factory(
    "spanbert_spancat",
    assigns=["doc.spans"],
    default_config={
        **SHARED_DEFAULT_CONFIG,
        "spans_key": DEFAULT_SPANS_KEY,
        "threshold": 0.5,
        "max_positive": None,
        "scorer": {"@scorers": "spacy.spancat_scorer.v1"},
    },
    default_score_weights={f"spans_{DEFAULT_SPANS_KEY}_f": 1.0, f"spans_{DEFAULT_SPANS_KEY}_p": 0.0,
                           f"spans_{DEFAULT_SPANS_KEY}_r": 0.0},
)
def make_spanbert_spancat(
    nlp: Language,
    name: str,
    model: Model[Tuple[List[Doc], Ragged], Floats2d],
    suggester: Callable,
    spans_key: str,
    threshold: float,
    max_positive: Optional[int],
    negative_weight: float,
    negative_sample_rate: float,
    seed: int,
    head_learn_rate_factor: float,
    scorer: Optional[Callable],
) -> "SpanBoundaryCategorizer":
    """Create a multi-label span categoriser writing `doc.spans[spans_key]`.

    model (Model[Tuple[List[Doc], Ragged], Floats2d]): Span model returning one logit per label.
    suggester (Suggester): Candidate spans, e.g. `spacy-spanbert.sentence_ngram_suggester.v2`.
    spans_key (str): `doc.spans` key read for gold spans and written with predictions.
    threshold (float): Minimum sigmoid probability for a label to be assigned.
    max_positive (Optional[int]): At most this many labels per span (None: no limit).
    negative_weight (float): Loss weight of candidates without any gold label.
    negative_sample_rate (float): Share of label-less candidates used per update (1.0 = all).
    seed (int): Seed of the negative sampling.
    head_learn_rate_factor (float): Learning-rate multiplier of the span scorer (a fresh head learns faster).
    """
    return SpanBoundaryCategorizer(
        nlp.vocab,
        model,
        suggester,
        name,
        spans_key=spans_key,
        threshold=threshold,
        max_positive=max_positive,
        negative_weight=negative_weight,
        negative_sample_rate=negative_sample_rate,
        seed=seed,
        head_learn_rate_factor=head_learn_rate_factor,
        scorer=scorer,
    )


class SpanBoundaryCategorizer(SpanBoundaryPipe):
    """Sigmoid multi-label span categoriser; overlapping and nested spans are kept."""

    normalize = "sigmoid"

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        suggester: Callable,
        name: str = "spanbert_spancat",
        *,
        spans_key: str = DEFAULT_SPANS_KEY,
        threshold: float = 0.5,
        max_positive: Optional[int] = None,
        negative_weight: float = 1.0,
        negative_sample_rate: float = 1.0,
        seed: int = 0,
        head_learn_rate_factor: float = 1.0,
        scorer: Optional[Callable] = None,
    ) -> None:
        super().__init__(
            vocab,
            model,
            suggester,
            name,
            add_negative_label=False,
            spans_key=spans_key,
            negative_weight=negative_weight,
            allow_overlap=True,
            max_positive=max_positive,
            threshold=threshold,
            scorer=scorer,
            negative_sample_rate=negative_sample_rate,
            seed=seed,
            head_learn_rate_factor=head_learn_rate_factor,
        )

    def _gold_spans(self, doc: Doc) -> Iterable[Span]:
        return doc.spans.get(self.key, [])

    @property
    def _gold_source(self) -> str:
        return f"doc.spans['{self.key}']"

    def set_annotations(self, docs: Iterable[Doc], indices_scores: Tuple[Ragged, Floats2d]) -> None:
        """Write each doc's labelled spans to `doc.spans[spans_key]`, with `attrs["scores"]` on every group (also for a
        doc with no candidate spans); the scores move to the host once per batch."""
        indices, scores = indices_scores
        ops = self.model.ops
        lengths = ops.to_numpy(indices.lengths)
        data = ops.to_numpy(indices.dataXd)
        scores = ops.to_numpy(scores)
        offset = 0
        for doc, length in zip(docs, lengths):
            window = slice(offset, offset + int(length))
            chosen = decode_spans(data[window], scores[window], self.cfg["threshold"], self.cfg["max_positive"],
                                  bool(self.cfg["allow_overlap"]))
            labels = self.labels
            group = SpanGroup(doc, name=self.key, spans=[Span(doc, s, e, label=labels[k]) for s, e, k, _ in chosen])
            group.attrs["scores"] = numpy.asarray([p for *_, p in chosen], dtype="f")
            doc.spans[self.key] = group
            offset += int(length)


def decode_spans(spans: numpy.ndarray, scores: numpy.ndarray, threshold: Optional[float], max_positive: Optional[int],
                 allow_overlap: bool = True) -> List[Tuple[int, int, int, float]]:
    """(start, end, label column, score) of the labelled spans of one doc, from its candidate rows and sigmoid scores.

    Every label scoring at least `threshold` (None: every label), keeping the best `max_positive` per span (None:
    all), in candidate order. With `max_positive` = 1 and `allow_overlap` false, the best spans come first and a span
    overlapping a kept one is dropped.
    """
    if scores.size == 0:
        return []
    keep = numpy.ones(scores.shape, dtype=bool) if threshold is None else scores >= float(threshold)
    if max_positive is not None and max_positive < scores.shape[1]:
        ranked = numpy.argsort(-scores, axis=1, kind="stable")
        keep[numpy.arange(scores.shape[0])[:, None], ranked[:, int(max_positive):]] = False
    rows, cols = numpy.nonzero(keep)
    chosen = [(int(spans[i, 0]), int(spans[i, 1]), int(k), float(scores[i, k])) for i, k in zip(rows, cols)]
    if max_positive != 1 or allow_overlap:
        return chosen
    taken: set = set()
    kept = []
    for start, end, label, score in sorted(chosen, key=lambda row: -row[3]):
        if not taken.isdisjoint(range(start, end)):
            continue
        taken.update(range(start, end))
        kept.append((start, end, label, score))
    return kept

"""`spanbert_spancat`: multi-label span categorisation over boundary-scored spans; nested and overlapping spans.

A thin subclass of spaCy's `SpanCategorizer`: its multi-label decoding (threshold, `max_positive`,
`attrs["scores"]`) and its `spans_{key}_p/r/f` scorer are reused as they are; only the span model (logits from
span boundaries) and the sigmoid cross-entropy loss are ours.
"""
from typing import Callable, Iterable, List, Optional, Tuple

import numpy

from spacy.language import Language
from spacy.tokens import Doc, Span
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
        """spaCy's multi-label decoding, with the scores moved to the host once per batch (not once per doc), and
        `attrs["scores"]` on every group, also for a doc with no candidate spans (empty or whitespace only)."""
        indices, scores = indices_scores
        ops = self.model.ops
        lengths = ops.to_numpy(indices.lengths)
        data = ops.to_numpy(indices.dataXd)
        scores = ops.to_numpy(scores)
        offset = 0
        for doc, length in zip(docs, lengths):
            window = slice(offset, offset + int(length))
            if self.cfg["max_positive"] == 1:
                group = self._make_span_group_singlelabel(doc, data[window], scores[window],
                                                          bool(self.cfg["allow_overlap"]))
            else:
                group = self._make_span_group_multilabel(doc, data[window], scores[window])
            group.attrs.setdefault("scores", numpy.zeros((0,), dtype="f"))
            doc.spans[self.key] = group
            offset += int(length)

"""`spanbert_ner`: flat named-entity recognition by scoring every candidate span from its boundaries.

Writes `doc.ents` (greedy non-overlapping decoding by score over labels + a "no entity" softmax class), keeps every
entity's confidence in `doc.spans[spans_key]` (`attrs["scores"]`) and in `span._.spanbert_score`, reads gold from
`doc.ents` and scores with spaCy's NER scorer, so `spacy train` and `spacy evaluate` work unchanged.
"""
from typing import Any, Callable, Iterable, List, Optional, Tuple

import numpy
from spacy.language import Language
from spacy.tokens import Doc, Span, SpanGroup
from thinc.api import Model
from spacy.vocab import Vocab
from thinc.types import Floats2d, Ragged

from .base import SHARED_DEFAULT_CONFIG, SpanBoundaryPipe

SCORE_EXTENSION = "spanbert_score"


def _span_score(span: Span) -> Optional[float]:
    """Getter of `span._.spanbert_score`: the confidence stored by the last `spanbert_ner` that ran on the doc.

    `set_annotations` writes the group sorted by start and without overlaps, so a binary search finds the span in
    O(log n): a 20,000-word document has thousands of entities. Spans not in that group get None."""
    key = span.doc.user_data.get("spanbert_ner.spans_key")
    if key is None or key not in span.doc.spans:
        return None
    group = span.doc.spans[key]
    scores = group.attrs.get("scores", [])
    lo, hi = 0, min(len(group), len(scores))
    while lo < hi:
        mid = (lo + hi) // 2
        if group[mid].start < span.start:
            lo = mid + 1
        else:
            hi = mid
    if lo < min(len(group), len(scores)):
        candidate = group[lo]
        if candidate.start == span.start and candidate.end == span.end and candidate.label == span.label:
            return float(scores[lo])
    return None


@Language.factory(
    "spanbert_ner",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type", "doc.spans"],
    default_config={
        **SHARED_DEFAULT_CONFIG,
        "spans_key": "spanbert_ents",
        "overwrite_ents": True,
        "threshold": None,
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_spanbert_ner(
    nlp: Language,
    name: str,
    model: Model[Tuple[List[Doc], Ragged], Floats2d],
    suggester: Callable,
    spans_key: str,
    overwrite_ents: bool,
    threshold: Optional[float],
    negative_weight: float,
    negative_sample_rate: float,
    seed: int,
    head_learn_rate_factor: float,
    scorer: Optional[Callable],
) -> "SpanBoundaryNER":
    """Create a span-boundary NER component.

    model (Model[Tuple[List[Doc], Ragged], Floats2d]): Span model returning one logit per label plus "no entity".
    suggester (Suggester): Candidate spans, e.g. `spacy-spanbert.sentence_ngram_suggester.v2`.
    spans_key (str): `doc.spans` key for the predicted entities with their scores (`attrs["scores"]`).
    overwrite_ents (bool): Replace existing `doc.ents` (True) or keep them and add only non-overlapping entities.
    threshold (Optional[float]): Minimum probability of the winning label for an entity to be written.
    negative_weight (float): Loss weight of "no entity" candidates.
    negative_sample_rate (float): Share of "no entity" candidates used per update (1.0 = all).
    seed (int): Seed of the negative sampling.
    head_learn_rate_factor (float): Learning-rate multiplier of the span scorer (a fresh head learns faster).
    """
    return SpanBoundaryNER(
        nlp.vocab,
        model,
        suggester,
        name,
        spans_key=spans_key,
        overwrite_ents=overwrite_ents,
        threshold=threshold,
        negative_weight=negative_weight,
        negative_sample_rate=negative_sample_rate,
        seed=seed,
        head_learn_rate_factor=head_learn_rate_factor,
        scorer=scorer,
    )


class SpanBoundaryNER(SpanBoundaryPipe):
    """Flat NER over boundary-scored spans: softmax over labels + "no entity", greedy decoding by probability."""

    normalize = "softmax"
    runtime_settings = ("threshold", "overwrite_ents")

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        suggester: Callable,
        name: str = "spanbert_ner",
        *,
        spans_key: str = "spanbert_ents",
        overwrite_ents: bool = True,
        threshold: Optional[float] = None,
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
            add_negative_label=True,
            spans_key=spans_key,
            negative_weight=negative_weight,
            allow_overlap=False,
            max_positive=1,
            threshold=threshold,
            scorer=scorer,
            negative_sample_rate=negative_sample_rate,
            seed=seed,
            head_learn_rate_factor=head_learn_rate_factor,
        )
        self.cfg["overwrite_ents"] = overwrite_ents
        if not Span.has_extension(SCORE_EXTENSION):
            Span.set_extension(SCORE_EXTENSION, getter=_span_score)

    def _gold_spans(self, doc: Doc) -> Iterable[Span]:
        return doc.ents

    @property
    def _gold_source(self) -> str:
        return "doc.ents"

    def set_annotations(self, docs: Iterable[Doc], indices_scores: Tuple[Ragged, Floats2d]) -> None:
        """Write the best non-overlapping entities to `doc.ents` and, with scores, to `doc.spans[spans_key]`."""
        indices, scores = indices_scores
        ops = self.model.ops
        lengths = ops.to_numpy(indices.lengths)
        data = ops.to_numpy(indices.dataXd)
        # the winning label and its probability per span are found on the device; only they cross to the host
        best_d = scores.argmax(axis=1) if scores.size else ops.alloc1i(0)
        best = ops.to_numpy(best_d)
        best_p = ops.to_numpy(scores[ops.xp.arange(scores.shape[0]), best_d]) if scores.size else best.astype("f")
        rank_p = self._uncalibrated(scores, best_d, best_p)
        offset = 0
        keep_existing = not self.cfg["overwrite_ents"]
        for doc, length in zip(docs, lengths):
            # existing entities block their tokens before decoding: a span overlapping one must not win a token
            # and then be dropped, which would also drop the lower-scoring span it had beaten there
            blocked = numpy.isin(doc.to_array("ENT_IOB"), (1, 3)) if keep_existing and len(doc) else None
            window = slice(offset, offset + length)
            spans, span_scores = self.decode_entities(doc, data[window], best[window], best_p[window], blocked,
                                                      rank_p[window])
            offset += length
            if keep_existing:
                doc.set_ents(spans, default="unmodified")
            else:
                doc.ents = spans
            group = SpanGroup(doc, name=self.key, spans=spans)
            group.attrs["scores"] = [float(s) for s in span_scores]
            doc.spans[self.key] = group
            doc.user_data["spanbert_ner.spans_key"] = self.key

    def _uncalibrated(self, scores: Floats2d, best_d: Any, best_p: numpy.ndarray) -> numpy.ndarray:
        """The winning labels' probabilities before the fitted temperature T: softmax(T * log p_T) = softmax(z), so
        decoding ranks overlapping spans as the model does, and calibration changes scores, never entities."""
        temperature = self.cfg.get("temperature", 1.0)
        if not scores.size or not isinstance(temperature, (int, float)) or float(temperature) == 1.0:
            return best_p
        xp = self.model.ops.xp
        logits = float(temperature) * xp.log(xp.maximum(scores, 1e-30))
        probs = self._probabilities(logits, calibrated=False)
        return self.model.ops.to_numpy(probs[xp.arange(scores.shape[0]), best_d])

    def decode_entities(self, doc: Doc, spans: numpy.ndarray, best: numpy.ndarray, best_p: numpy.ndarray,
                        blocked: Optional[numpy.ndarray] = None,
                        rank_p: Optional[numpy.ndarray] = None) -> Tuple[List[Span], List[float]]:
        """Greedy decoding: highest-probability non-negative spans first, skipping any that overlap a kept one.

        best, best_p: each span's winning label (or "no entity") and its (calibrated) probability.
        blocked: tokens no span may cover (the entities an earlier component set, with overwrite_ents = False).
        rank_p: the probabilities that order the spans (default best_p): the uncalibrated ones.
        """
        if best.size == 0:
            return [], []
        keep = best != self.negative_column
        if self.cfg["threshold"] is not None:
            keep &= best_p >= float(self.cfg["threshold"])
        candidates = numpy.flatnonzero(keep)
        rank_p = best_p if rank_p is None else rank_p
        order = candidates[numpy.argsort(-rank_p[candidates], kind="stable")]
        taken = numpy.zeros((len(doc),), dtype=bool) if blocked is None else blocked.astype(bool, copy=True)
        chosen: List[Tuple[int, int, int, float]] = []
        for i in order:
            start, end = int(spans[i, 0]), int(spans[i, 1])
            if taken[start:end].any():
                continue
            taken[start:end] = True
            chosen.append((start, end, int(best[i]), float(best_p[i])))
        chosen.sort()
        labels = self.labels
        return [Span(doc, s, e, label=labels[k]) for s, e, k, _ in chosen], [p for *_, p in chosen]

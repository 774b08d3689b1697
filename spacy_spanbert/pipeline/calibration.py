"""Temperature scaling for `spanbert_ner` and `spanbert_spancat`: entity scores a user can read as probabilities.

A trained span model is over- or under-confident; dividing its logits by a temperature T fitted on held-out data
(Guo et al., "On Calibration of Modern Neural Networks", ICML 2017) fixes most of that without touching what it
predicts. T lives in the component's `cfg["temperature"]`, so it is saved and loaded with the pipeline.

- `spanbert_ner`: ONE scalar T (softmax over labels + "no entity"). A scalar keeps every candidate's winning label
  and the order of the winners' probabilities, so greedy decoding and F are unchanged. It is fitted on the entities
  the component writes (the scores users see): binary cross-entropy of each decoded entity's score against whether
  it is a gold entity (span and label).
- `spanbert_spancat`: one T per label (independent sigmoids), each fitted by the label's binary cross-entropy over
  every candidate span. The threshold then cuts calibrated probabilities.
"""
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy
from spacy.language import Language
from spacy.training import Example
from spacy.util import minibatch

from .base import SpanBoundaryPipe

EPS = 1e-7
LOG_T_RANGE = (math.log(0.05), math.log(20.0))  # temperatures searched; outside it a model is broken, not miscalibrated


@dataclass
class CalibrationData:
    """Raw logits of every candidate span on labelled docs, and what the gold says about each.

    logits (n_candidates, n_columns); gold_class (n_candidates,) the gold column per candidate for softmax (the
    "none" column when no gold span matches), gold_multi (n_candidates, n_labels) 0/1 per label for sigmoid;
    decoded (rows of `logits`) the candidates greedy decoding keeps and decoded_correct whether each is gold.
    """

    logits: numpy.ndarray
    gold_class: numpy.ndarray
    gold_multi: numpy.ndarray
    decoded: numpy.ndarray = field(default_factory=lambda: numpy.zeros((0,), dtype=int))
    decoded_correct: numpy.ndarray = field(default_factory=lambda: numpy.zeros((0,), dtype=bool))
    n_gold: int = 0


def span_components(nlp: Language) -> List[str]:
    """Names of the pipeline's span-boundary components (the ones calibration applies to)."""
    return [name for name, pipe in nlp.pipeline if isinstance(pipe, SpanBoundaryPipe)]


def resolve_component(nlp: Language, name: Optional[str]) -> SpanBoundaryPipe:
    """The component to calibrate: `name`, or the pipeline's only span-boundary component. Raises ValueError."""
    candidates = span_components(nlp)
    if name is None:
        if len(candidates) != 1:
            found = ", ".join(candidates) or "none"
            raise ValueError(f"cannot choose the component to calibrate (span-boundary components: {found}); "
                             f"pass --component NAME")
        name = candidates[0]
    if name not in nlp.pipe_names:
        raise ValueError(f"component '{name}' is not in the pipeline ({', '.join(nlp.pipe_names)}); "
                         f"pass --component with one of: {', '.join(candidates) or 'none (no spanbert_* component)'}")
    pipe = nlp.get_pipe(name)
    if not isinstance(pipe, SpanBoundaryPipe):
        raise ValueError(f"component '{name}' is not spanbert_ner or spanbert_spancat; "
                         f"pass --component with one of: {', '.join(candidates) or 'none'}")
    return pipe


def collect(nlp: Language, name: str, examples: Sequence[Example], batch_size: int = 32) -> CalibrationData:
    """Run the pipeline up to `name` on the examples' texts and keep the component's raw logits with the gold.

    Raises ValueError when the examples hold no gold spans for the component (calibration needs labelled data).
    """
    pipe = nlp.get_pipe(name)
    before = nlp.pipe_names[: nlp.pipe_names.index(name)]
    softmax = pipe.normalize == "softmax"
    label_map = pipe._label_map
    logits_parts: List[numpy.ndarray] = []
    gold_class: List[numpy.ndarray] = []
    gold_multi: List[numpy.ndarray] = []
    decoded: List[numpy.ndarray] = []
    decoded_correct: List[numpy.ndarray] = []
    offset = n_gold = 0
    for batch in minibatch(list(examples), batch_size):
        # the examples' own predicted docs: same tokens as the gold (a re-tokenised text would misalign spans)
        docs = [eg.predicted.copy() for eg in batch]
        for other in before:
            docs = list(nlp.get_pipe(other).pipe(docs))
        batch = [Example(doc, eg.reference) for doc, eg in zip(docs, batch)]
        indices = pipe.suggester(docs, ops=pipe.model.ops)
        lengths = pipe.model.ops.to_numpy(indices.lengths)
        spans = pipe.model.ops.to_numpy(indices.dataXd)
        if lengths.sum() == 0:
            continue
        logits = pipe.model.ops.to_numpy(pipe.model.predict((docs, indices))).astype("float32")
        start = 0
        for doc, eg, length in zip(docs, batch, lengths):
            rows = spans[start : start + length]
            gold = {(s.start, s.end, s.label_) for s in pipe._get_aligned_spans(eg)}
            n_gold += len(gold)
            index = {(int(s), int(e)): i for i, (s, e) in enumerate(rows)}
            multi = numpy.zeros((length, len(pipe.labels)), dtype="float32")
            for s, e, label in gold:
                if (s, e) in index and label in label_map:
                    multi[index[(s, e)], label_map[label]] = 1.0
            gold_multi.append(multi)
            if softmax:
                cls = numpy.where(multi.any(axis=1), multi.argmax(axis=1), pipe._negative_label_i)
                gold_class.append(cls)
                # the entities the component writes with no threshold (a scalar temperature does not change them)
                probs = _softmax(logits[start : start + length])
                best = probs.argmax(axis=1)
                with _no_threshold(pipe):
                    ents, _ = pipe._decode(doc, rows, best, probs[numpy.arange(len(best)), best])
                decoded.append(numpy.array([offset + start + index[(e.start, e.end)] for e in ents], dtype=int))
                decoded_correct.append(numpy.array([(e.start, e.end, e.label_) in gold for e in ents], dtype=bool))
            start += length
        logits_parts.append(logits)
        offset += int(lengths.sum())
    if n_gold == 0:
        where = "doc.ents" if softmax else f'doc.spans["{pipe.key}"]'
        raise ValueError(f"the dev data has no gold spans in {where} for '{name}'; calibrate on labelled dev data "
                         f"(e.g. corpus/dev.spacy from `spacy project run convert`)")
    cat = lambda parts, empty: numpy.concatenate(parts) if parts else empty  # noqa: E731
    return CalibrationData(
        logits=cat(logits_parts, numpy.zeros((0, pipe._n_labels), dtype="float32")),
        gold_class=cat(gold_class, numpy.zeros((0,), dtype=int)),
        gold_multi=cat(gold_multi, numpy.zeros((0, len(pipe.labels)), dtype="float32")),
        decoded=cat(decoded, numpy.zeros((0,), dtype=int)),
        decoded_correct=cat(decoded_correct, numpy.zeros((0,), dtype=bool)),
        n_gold=n_gold,
    )


@contextmanager
def _no_threshold(pipe: SpanBoundaryPipe) -> Iterator[None]:
    """Decode every entity, whatever threshold the pipeline was loaded with (it is put back afterwards)."""
    saved = pipe.cfg.get("threshold")
    pipe.cfg["threshold"] = None
    try:
        yield
    finally:
        pipe.cfg["threshold"] = saved


def _softmax(logits: numpy.ndarray) -> numpy.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = numpy.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _bce(p: numpy.ndarray, y: numpy.ndarray) -> float:
    p = numpy.clip(p, EPS, 1 - EPS)
    return float(-(y * numpy.log(p) + (1 - y) * numpy.log(1 - p)).mean()) if p.size else 0.0


def golden_section(loss: Callable[[float], float], lo: float, hi: float, tol: float = 1e-4) -> float:
    """Minimise a 1-D function that is unimodal on [lo, hi] (NLL in log T is); RETURNS the argmin."""
    ratio = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = loss(c), loss(d)
    while b - a > tol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = loss(d)
    return (a + b) / 2


def entity_nll(data: CalibrationData, temperature: float) -> float:
    """Mean binary cross-entropy of the decoded entities' scores at `temperature` against their correctness."""
    if data.decoded.size == 0:
        return 0.0
    probs = _softmax(data.logits[data.decoded] / temperature)
    return _bce(probs.max(axis=1), data.decoded_correct.astype("float32"))


def label_nll(logits: numpy.ndarray, gold: numpy.ndarray, temperature: float) -> float:
    """Mean binary cross-entropy of one sigmoid column at `temperature`."""
    return _bce(1.0 / (1.0 + numpy.exp(-numpy.clip(logits / temperature, -60.0, 60.0))), gold)


def fit_temperature(pipe: SpanBoundaryPipe, data: CalibrationData) -> "float | List[float]":
    """A scalar T for softmax components (on decoded entities), one T per label for sigmoid ones."""
    if pipe.normalize == "softmax":
        if data.decoded.size == 0:
            raise ValueError(f"'{pipe.name}' predicts no entities on the dev data, so there is nothing to calibrate; "
                             f"train it longer or check that the dev data matches the training data")
        return math.exp(golden_section(lambda lt: entity_nll(data, math.exp(lt)), *LOG_T_RANGE))
    temperatures = []
    for k in range(len(pipe.labels)):
        column, gold = data.logits[:, k], data.gold_multi[:, k]
        if gold.sum() == 0:  # no positive example of this label on dev: nothing to fit, leave it alone
            temperatures.append(1.0)
            continue
        temperatures.append(math.exp(golden_section(lambda lt: label_nll(column, gold, math.exp(lt)), *LOG_T_RANGE)))
    return temperatures


def expected_calibration_error(confidence: numpy.ndarray, correct: numpy.ndarray, n_bins: int = 15) -> float:
    """ECE: the share-weighted gap between mean confidence and accuracy over `n_bins` equal-width bins of [0, 1]."""
    bins = reliability_bins(confidence, correct, n_bins)
    total = max(sum(b["count"] for b in bins), 1)
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]))


def reliability_bins(confidence: numpy.ndarray, correct: numpy.ndarray, n_bins: int = 15) -> List[Dict[str, float]]:
    """Per equal-width bin: its range, count, mean confidence and accuracy (the points of a reliability diagram)."""
    confidence = numpy.asarray(confidence, dtype="float64")
    correct = numpy.asarray(correct, dtype="float64")
    which = numpy.minimum((confidence * n_bins).astype(int), n_bins - 1)
    bins = []
    for b in range(n_bins):
        members = which == b
        count = int(members.sum())
        bins.append({"low": b / n_bins, "high": (b + 1) / n_bins, "count": count,
                     "confidence": float(confidence[members].mean()) if count else 0.0,
                     "accuracy": float(correct[members].mean()) if count else 0.0})
    return bins


def scores_and_correctness(pipe: SpanBoundaryPipe, data: CalibrationData,
                           temperature: "float | Sequence[float]") -> Tuple[numpy.ndarray, numpy.ndarray]:
    """The scores the component writes at `temperature`, and whether each is right.

    ner: one score per decoded entity (the same entities at any scalar temperature). spancat: one score per
    (candidate span, label) pair, right when the pair is gold; a threshold t keeps the pairs scoring >= t.
    """
    if pipe.normalize == "softmax":
        probs = _softmax(data.logits[data.decoded] / float(temperature))
        return probs.max(axis=1), data.decoded_correct
    t = numpy.broadcast_to(numpy.asarray(temperature, dtype="float32"), (data.logits.shape[1],))
    probs = 1.0 / (1.0 + numpy.exp(-numpy.clip(data.logits / t, -60.0, 60.0)))
    return probs.ravel(), data.gold_multi.ravel().astype(bool)


def calibrate(nlp: Language, examples: Iterable[Example], component: Optional[str] = None,
              batch_size: int = 32) -> Dict[str, object]:
    """Fit the component's temperature on labelled `examples` and store it in its cfg (saved with the pipeline).

    RETURNS (Dict[str, object]): component name, temperature, and the fitting loss before and after.
    """
    pipe = resolve_component(nlp, component)
    data = collect(nlp, pipe.name, list(examples), batch_size)
    temperature = fit_temperature(pipe, data)
    if pipe.normalize == "softmax":
        before, after = entity_nll(data, 1.0), entity_nll(data, float(temperature))
    else:
        ts = list(temperature)
        before = float(numpy.mean([label_nll(data.logits[:, k], data.gold_multi[:, k], 1.0) for k in range(len(ts))]))
        after = float(numpy.mean([label_nll(data.logits[:, k], data.gold_multi[:, k], t) for k, t in enumerate(ts)]))
    # rounded so that the value survives cfg's JSON serialisation exactly
    temperature = round(temperature, 6) if isinstance(temperature, float) else [round(t, 6) for t in temperature]
    pipe.cfg["temperature"] = temperature
    ece = [expected_calibration_error(*scores_and_correctness(pipe, data, t)) for t in (1.0, temperature)]
    return {"component": pipe.name, "temperature": temperature, "nll_before": before, "nll_after": after,
            "ece_before": ece[0], "ece_after": ece[1],
            "n_candidates": int(data.logits.shape[0]), "n_entities": int(data.decoded.size), "n_gold": data.n_gold}

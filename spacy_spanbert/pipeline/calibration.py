"""Calibration of `spanbert_ner`, `spanbert_spancat` and `spanbert_rel`: scores a user can read as probabilities.

A trained span model is over- or under-confident; a map of its logits fitted on held-out data fixes much of that
without touching what it predicts. The map lives in the component's cfg (`temperature`, `calibration_bias`: the
component writes softmax/sigmoid(logits / temperature + calibration_bias)), so it is saved and loaded with the
pipeline.

- `spanbert_ner`: ONE scalar temperature (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017;
  softmax over labels + "no entity"), bias 0. A scalar keeps every candidate's winning label and the order of the
  winners' probabilities, so greedy decoding and F are unchanged (a bias could change the winner). It is fitted on
  the entities the component writes: binary cross-entropy of each decoded entity's score against whether it is a
  gold entity (span and label).
- `spanbert_spancat`: per-label Platt scaling (independent sigmoids): sigmoid(a * z + b) per label, stored as
  temperature 1 / a and calibration_bias b. A temperature alone only stretches the logits around 0; the model is
  over-confident in the middle (0.5-0.7 right 35-47% of the time on CoNLL-2003) and needs the offset too. Fitted
  on the pairs scoring >= `PLATT_FLOOR` (see `platt_rows`). Within a label the order of the scores is unchanged;
  the threshold then cuts calibrated probabilities, so which pairs it keeps changes.
- `spanbert_rel`: as ner (softmax over labels + "no relation"): one temperature, fitted on the relations it writes
  against whether each is a gold relation (label, both arguments' boundaries and types: the strict measure). With
  `multi_label` (a sigmoid per label): per-label Platt scaling, as spancat, on the (entity pair, label) rows.
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
from .relation_extractor import SpanRelationExtractor
from .relation_scoring import relation_keys

Calibrated = "SpanBoundaryPipe | SpanRelationExtractor"

EPS = 1e-7
LOG_T_RANGE = (math.log(0.05), math.log(20.0))  # temperatures searched; outside it a model is broken, not miscalibrated
PLATT_FLOOR = 0.01  # spancat: Platt scaling is fitted on the (span, label) pairs whose raw score is >= this
SCORED_FLOOR = 0.1  # spancat: its ECE is measured on the pairs a threshold of 0.1 would write


@dataclass
class CalibrationData:
    """Raw logits of every candidate span on labelled docs, and what the gold says about each.

    logits (n_candidates, n_columns); gold_class (n_candidates,) the gold column per candidate for softmax (the
    "none" column when no gold span matches), gold_multi (n_candidates, n_labels) 0/1 per label for sigmoid;
    decoded (rows of `logits`) the candidates greedy decoding keeps, decoded_column the column each was written
    with (None: each row's argmax; rel with type constraints: the best label its entity types allow) and
    decoded_correct whether each is gold.
    """

    logits: numpy.ndarray
    gold_class: numpy.ndarray
    gold_multi: numpy.ndarray
    decoded: numpy.ndarray = field(default_factory=lambda: numpy.zeros((0,), dtype=int))
    decoded_column: Optional[numpy.ndarray] = None
    decoded_correct: numpy.ndarray = field(default_factory=lambda: numpy.zeros((0,), dtype=bool))
    n_gold: int = 0


def span_components(nlp: Language) -> List[str]:
    """Names of the pipeline's components that calibration applies to: spanbert_ner, spanbert_spancat and
    spanbert_rel."""
    return [name for name, pipe in nlp.pipeline if isinstance(pipe, (SpanBoundaryPipe, SpanRelationExtractor))]


def resolve_component(nlp: Language, name: Optional[str]) -> Calibrated:
    """The component to calibrate: `name`, or the pipeline's only calibratable component. Raises ValueError."""
    candidates = span_components(nlp)
    if name is None:
        if len(candidates) != 1:
            found = ", ".join(candidates) or "none"
            raise ValueError(f"cannot choose the component to calibrate (spanbert_ner/spancat/rel components: "
                             f"{found}); pass --component NAME")
        name = candidates[0]
    if name not in nlp.pipe_names:
        raise ValueError(f"component '{name}' is not in the pipeline ({', '.join(nlp.pipe_names)}); "
                         f"pass --component with one of: {', '.join(candidates) or 'none (no spanbert_* component)'}")
    if name not in candidates:
        raise ValueError(f"component '{name}' is not spanbert_ner, spanbert_spancat or spanbert_rel; "
                         f"pass --component with one of: {', '.join(candidates) or 'none'}")
    return nlp.get_pipe(name)


def _unit(pipe: Calibrated) -> str:
    return "relation" if isinstance(pipe, SpanRelationExtractor) else "entity"


def _run_before(nlp: Language, name: str, batch: Sequence[Example]) -> List[Example]:
    """The examples with their predicted docs run through the components before `name`: the examples' own
    predicted docs, with the gold's tokens (a re-tokenised text would misalign spans)."""
    docs = [eg.predicted.copy() for eg in batch]
    for other in nlp.pipe_names[: nlp.pipe_names.index(name)]:
        docs = list(nlp.get_pipe(other).pipe(docs))
    return [Example(doc, eg.reference) for doc, eg in zip(docs, batch)]


def collect_relations(nlp: Language, name: str, examples: Sequence[Example], batch_size: int = 32) -> CalibrationData:
    """Run the pipeline up to `name` (a spanbert_rel) on the examples and keep its raw logits for every candidate
    pair of predicted entities, with the gold: a pair's label is gold when the reference has that relation between
    entities of the same boundaries and types. Gold relations between entities the pipeline missed count in
    `n_gold` only. Raises ValueError when the examples hold no gold relations."""
    pipe: SpanRelationExtractor = nlp.get_pipe(name)
    labels = pipe.labels
    parts: Dict[str, List[numpy.ndarray]] = {"logits": [], "multi": [], "cls": []}
    decoded: List[Tuple[int, int, bool]] = []  # (row of the logits, column written, right) per written relation
    offset = n_gold = 0
    with _no_threshold(pipe):  # every relation the component would write without a threshold
        for batch in minibatch(list(examples), batch_size):
            batch = _run_before(nlp, name, batch)
            candidates, logits = pipe.logits([eg.predicted for eg in batch])
            logits = pipe.model.ops.to_numpy(logits).astype("float32")
            probs = _softmax(logits) if pipe.normalize == "softmax" else None
            row = 0
            for eg, (entities, pairs) in zip(batch, candidates):
                gold = relation_keys(eg.reference)
                n_gold += len(gold)
                multi = numpy.zeros((len(pairs), len(labels)), dtype="float32")
                for r, (i, j) in enumerate(pairs):
                    head, tail = entities[i], entities[j]
                    for k, label in enumerate(labels):
                        multi[r, k] = float((head.start_char, head.end_char, head.label_, tail.start_char,
                                             tail.end_char, tail.label_, label) in gold)
                    if probs is not None:
                        decoded += [(offset + row + r, k, bool(multi[r, k]))
                                    for k in pipe.decode(entities, (i, j), probs[row + r])]
                parts["multi"].append(multi)
                parts["cls"].append(numpy.where(multi.any(axis=1), multi.argmax(axis=1), len(labels)))
                row += len(pairs)
            parts["logits"].append(logits)
            offset += row
    if n_gold == 0:
        raise ValueError(f"the dev data has no gold relations in doc._.spanbert_rels for '{name}'; calibrate on "
                         f"labelled dev data (e.g. corpus/rel_dev.spacy from `spacy project run rel`)")
    cat = lambda key, empty: numpy.concatenate(parts[key]) if parts[key] else empty  # noqa: E731
    rows, columns, correct = zip(*decoded) if decoded else ((), (), ())
    return CalibrationData(
        logits=cat("logits", numpy.zeros((0, len(labels) + (pipe.negative_column is not None)), dtype="float32")),
        gold_class=cat("cls", numpy.zeros((0,), dtype=int)),
        gold_multi=cat("multi", numpy.zeros((0, len(labels)), dtype="float32")),
        decoded=numpy.asarray(rows, dtype=int),
        decoded_column=numpy.asarray(columns, dtype=int),
        decoded_correct=numpy.asarray(correct, dtype=bool),
        n_gold=n_gold,
    )


def collect(nlp: Language, name: str, examples: Sequence[Example], batch_size: int = 32) -> CalibrationData:
    """Run the pipeline up to `name` on the examples' texts and keep the component's raw logits with the gold.

    Raises ValueError when the examples hold no gold spans for the component (calibration needs labelled data).
    """
    pipe = nlp.get_pipe(name)
    if isinstance(pipe, SpanRelationExtractor):
        return collect_relations(nlp, name, examples, batch_size)
    softmax = pipe.normalize == "softmax"
    label_map = pipe.label_index
    logits_parts: List[numpy.ndarray] = []
    gold_class: List[numpy.ndarray] = []
    gold_multi: List[numpy.ndarray] = []
    decoded: List[numpy.ndarray] = []
    decoded_column: List[numpy.ndarray] = []
    decoded_correct: List[numpy.ndarray] = []
    offset = n_gold = 0
    for batch in minibatch(list(examples), batch_size):
        batch = _run_before(nlp, name, batch)
        docs = [eg.predicted for eg in batch]
        indices = pipe.suggester(docs, ops=pipe.model.ops)
        lengths = pipe.model.ops.to_numpy(indices.lengths)
        spans = pipe.model.ops.to_numpy(indices.dataXd)
        if lengths.sum() == 0:
            continue
        logits = pipe.model.ops.to_numpy(pipe.model.predict((docs, indices))).astype("float32")
        start = 0
        for doc, eg, length in zip(docs, batch, lengths):
            rows = spans[start : start + length]
            gold = {(s.start, s.end, s.label_) for s in pipe.aligned_gold_spans(eg)}
            n_gold += len(gold)
            index = {(int(s), int(e)): i for i, (s, e) in enumerate(rows)}
            multi = numpy.zeros((length, len(pipe.labels)), dtype="float32")
            for s, e, label in gold:
                if (s, e) in index and label in label_map:
                    multi[index[(s, e)], label_map[label]] = 1.0
            gold_multi.append(multi)
            if softmax:
                cls = numpy.where(multi.any(axis=1), multi.argmax(axis=1), pipe.negative_column)
                gold_class.append(cls)
                # the entities the component writes with no threshold (a scalar temperature does not change them)
                probs = _softmax(logits[start : start + length])
                best = probs.argmax(axis=1)
                with _no_threshold(pipe):
                    ents, _ = pipe.decode_entities(doc, rows, best, probs[numpy.arange(len(best)), best])
                decoded.append(numpy.array([offset + start + index[(e.start, e.end)] for e in ents], dtype=int))
                decoded_column.append(numpy.array([label_map[e.label_] for e in ents], dtype=int))
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
        logits=cat(logits_parts, numpy.zeros((0, pipe.n_columns), dtype="float32")),
        gold_class=cat(gold_class, numpy.zeros((0,), dtype=int)),
        gold_multi=cat(gold_multi, numpy.zeros((0, len(pipe.labels)), dtype="float32")),
        decoded=cat(decoded, numpy.zeros((0,), dtype=int)),
        decoded_column=cat(decoded_column, numpy.zeros((0,), dtype=int)),
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


def _sigmoid(logits: numpy.ndarray) -> numpy.ndarray:
    return 1.0 / (1.0 + numpy.exp(-numpy.clip(logits, -60.0, 60.0)))


def check_platt_floor(floor: float, setting: str = "platt_floor") -> None:
    """Raise the one-line error for a floor outside (0, 1), naming the `setting` the user passed."""
    if not 0.0 < floor < 1.0:
        raise ValueError(f"{setting} must be a score in (0, 1), got {floor}; e.g. {PLATT_FLOOR}")


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


def decoded_nll(data: CalibrationData, temperature: float) -> float:
    """Mean binary cross-entropy of the decoded entities' (relations') scores at `temperature` against their
    correctness."""
    if data.decoded.size == 0:
        return 0.0
    return _bce(decoded_scores(data, temperature), data.decoded_correct.astype("float32"))


def decoded_scores(data: CalibrationData, temperature: float) -> numpy.ndarray:
    """The score each decoded candidate is written with at `temperature`: its column's softmax probability."""
    probs = _softmax(data.logits[data.decoded] / float(temperature))
    column = probs.argmax(axis=1) if data.decoded_column is None else data.decoded_column
    return probs[numpy.arange(len(probs)), column]


def fit_platt(logits: numpy.ndarray, gold: numpy.ndarray, max_iter: int = 100) -> Tuple[float, float]:
    """Platt scaling of one sigmoid column: (a, b) minimising the cross-entropy of sigmoid(a * z + b) against gold.

    Newton's method on the two parameters (the loss is convex in them) with a backtracking step. The targets are
    Platt's smoothed ones, (n_pos + 1) / (n_pos + 2) and 1 / (n_neg + 2): without them a column the model separates
    perfectly would send `a` to infinity. `a` is kept in [1 / 20, 1 / 0.05], the temperatures `LOG_T_RANGE` allows.
    """
    z = numpy.asarray(logits, dtype="float64")
    y = numpy.asarray(gold, dtype="float64")
    n_pos = y.sum()
    target = numpy.where(y > 0.5, (n_pos + 1) / (n_pos + 2), 1 / (len(y) - n_pos + 2))

    def loss(a: float, b: float) -> float:
        margin = a * z + b  # log(1 + e^m) - t * m, computed stably
        return float((numpy.logaddexp(0.0, margin) - target * margin).mean())

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(max_iter):
        p = _sigmoid(a * z + b)
        residual, weight = p - target, p * (1 - p) + 1e-12
        grad = numpy.array([(residual * z).mean(), residual.mean()])
        hess = numpy.array([[(weight * z * z).mean(), (weight * z).mean()], [(weight * z).mean(), weight.mean()]])
        step = numpy.linalg.solve(hess + 1e-9 * numpy.eye(2), grad)
        scale = 1.0
        while scale > 1e-6:
            a_new, b_new = a - scale * step[0].item(), b - scale * step[1].item()
            new = loss(a_new, b_new)
            if new <= current:
                break
            scale /= 2
        else:
            break
        done = abs(current - new) < 1e-12
        a, b, current = a_new, b_new, new
        if done:
            break
    low, high = 1 / math.exp(LOG_T_RANGE[1]), 1 / math.exp(LOG_T_RANGE[0])
    if not low <= a <= high:  # clamp the slope, then refit the offset for it (the old b belonged to another a)
        a = min(max(a, low), high)
        b = golden_section(lambda b_: loss(a, b_), b - 20.0, b + 20.0)
    return a, b


def platt_rows(logits: numpy.ndarray, floor: float = PLATT_FLOOR) -> numpy.ndarray:
    """The (span, label) pairs spancat's Platt scaling is fitted on: raw score >= `floor` (a boolean mask).

    Nearly every candidate pair is an easy negative scoring ~0 (CoNLL-2003 dev: 99.1% of 2M pairs score < 0.01,
    holding 1.9% of the gold pairs): fitted on all of them, the two parameters are decided by pairs no threshold
    would write, not by the 0.1-0.9 scores a user thresholds. The floor keeps the pairs near and above any
    threshold one would set; the map is monotone per label, so pairs below it stay below everything the fit saw.
    """
    return logits >= math.log(floor / (1 - floor))


def fit_temperature(pipe: Calibrated, data: CalibrationData) -> float:
    """ner and rel: a scalar T fitted on the decoded entities / relations (softmax; a bias could change the winning
    label)."""
    unit = _unit(pipe)
    if data.decoded.size == 0:
        raise ValueError(f"'{pipe.name}' predicts no {unit}s on the dev data, so there is nothing to calibrate; "
                         f"train it longer or check that the dev data matches the training data")
    if data.decoded_correct.all() or not data.decoded_correct.any():
        # every entity right (or every one wrong): the likelihood has no optimum, only an edge of the search range
        raise ValueError(f"'{pipe.name}' gets every dev {unit} {'right' if data.decoded_correct.all() else 'wrong'}, "
                         f"so a temperature cannot be fitted: calibrate on more (or more varied) dev data")
    return math.exp(golden_section(lambda lt: decoded_nll(data, math.exp(lt)), *LOG_T_RANGE))


def fit_label_platt(data: CalibrationData, floor: float = PLATT_FLOOR) -> Tuple[List[float], List[float]]:
    """spancat: per label, Platt's (a, b) on the pairs `platt_rows` keeps; RETURNS (temperatures 1 / a, biases b).

    A label is left alone (T 1, b 0) when its fitted pairs hold no positive or no negative, or when the fit does
    not lower the cross-entropy on those pairs (it never makes dev worse).
    """
    temperatures, biases = [], []
    for k in range(data.logits.shape[1]):
        keep = platt_rows(data.logits[:, k], floor)
        column, gold = data.logits[keep, k], data.gold_multi[keep, k]
        a, b = 1.0, 0.0
        if 0 < gold.sum() < gold.size:
            a, b = fit_platt(column, gold)
            if platt_nll(column, gold, a, b) > platt_nll(column, gold, 1.0, 0.0):
                a, b = 1.0, 0.0
        temperatures.append(1.0 / a)
        biases.append(b)
    return temperatures, biases


def platt_nll(logits: numpy.ndarray, gold: numpy.ndarray, a: float, b: float) -> float:
    """Mean binary cross-entropy of sigmoid(a * logits + b) against gold."""
    return _bce(_sigmoid(a * logits + b), gold)


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


def scores_and_correctness(pipe: Calibrated, data: CalibrationData, temperature: "float | Sequence[float]",
                           bias: "float | Sequence[float]" = 0.0) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """The scores the component writes at (`temperature`, `bias`), and whether each is right.

    ner and rel: one score per decoded entity / relation (the same ones at any scalar temperature; bias 0).
    spancat and multi_label rel: one score per (candidate, label) pair, sigmoid(logit / T + b), right when the pair is gold; a
    threshold t keeps the pairs scoring >= t.
    """
    if pipe.normalize == "softmax":
        return decoded_scores(data, temperature), data.decoded_correct
    n_labels = data.logits.shape[1]
    t = numpy.broadcast_to(numpy.asarray(temperature, dtype="float32"), (n_labels,))
    b = numpy.broadcast_to(numpy.asarray(bias, dtype="float32"), (n_labels,))
    probs = _sigmoid(data.logits / t + b)
    return probs.ravel(), data.gold_multi.ravel().astype(bool)


def scored(pipe: Calibrated, scores: numpy.ndarray) -> numpy.ndarray:
    """Which scores a calibration error is measured on: every ner entity, the spancat pairs >= `SCORED_FLOOR`
    (all candidate pairs would give an ECE of ~0: the easy negatives score ~0 and are right)."""
    return numpy.ones(scores.shape, dtype=bool) if pipe.normalize == "softmax" else scores >= SCORED_FLOOR


def calibration_error(pipe: Calibrated, data: CalibrationData, temperature: "float | Sequence[float]",
                      bias: "float | Sequence[float]" = 0.0) -> float:
    """ECE of the scores the component writes at (`temperature`, `bias`), on the scores `scored` keeps."""
    scores, correct = scores_and_correctness(pipe, data, temperature, bias)
    keep = scored(pipe, scores)
    return expected_calibration_error(scores[keep], correct[keep])


def calibrate(nlp: Language, examples: Iterable[Example], component: Optional[str] = None,
              batch_size: int = 32, platt_floor: float = PLATT_FLOOR) -> Dict[str, object]:
    """Fit the component's calibration on labelled `examples` and store it in its cfg (saved with the pipeline).

    ner and rel: `temperature` (scalar), `calibration_bias` 0. spancat and multi_label rel: per-label Platt scaling,
    `temperature` = 1 / a and `calibration_bias` = b per label, fitted on the pairs scoring >= `platt_floor` (see
    `platt_rows`).
    RETURNS (Dict[str, object]): component name, temperature, bias, the fitting loss and dev ECE before and after.
    """
    check_platt_floor(platt_floor)
    pipe = resolve_component(nlp, component)
    data = collect(nlp, pipe.name, list(examples), batch_size)
    # rounded: the values read in cfg.json and meta.json
    if pipe.normalize == "softmax":
        temperature: "float | List[float]" = round(fit_temperature(pipe, data), 6)
        bias: "float | List[float]" = 0.0
        before, after = decoded_nll(data, 1.0), decoded_nll(data, temperature)
    else:
        temperatures, biases = fit_label_platt(data, platt_floor)
        temperature, bias = [round(t, 6) for t in temperatures], [round(b, 6) for b in biases]
        rows = [platt_rows(data.logits[:, k], platt_floor) for k in range(len(temperature))]
        nll = lambda k, a, b: platt_nll(data.logits[rows[k], k], data.gold_multi[rows[k], k], a, b)  # noqa: E731
        before = float(numpy.mean([nll(k, 1.0, 0.0) for k in range(len(temperature))]))
        after = float(numpy.mean([nll(k, 1 / t, b) for k, (t, b) in enumerate(zip(temperature, bias))]))
    pipe.cfg["temperature"], pipe.cfg["calibration_bias"] = temperature, bias
    return {"component": pipe.name, "temperature": temperature, "calibration_bias": bias,
            "nll_before": before, "nll_after": after,
            "ece_before": calibration_error(pipe, data, 1.0),
            "ece_after": calibration_error(pipe, data, temperature, bias),
            "platt_floor": None if pipe.normalize == "softmax" else platt_floor,
            "n_candidates": int(data.logits.shape[0]), "n_gold": data.n_gold,
            # the entities / relations the temperature was fitted on (softmax only: Platt fits candidate pairs)
            f"n_{_unit(pipe)}s": int(data.decoded.size) if pipe.normalize == "softmax" else None}

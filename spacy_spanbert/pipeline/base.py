"""Shared training logic of the span-boundary components, on top of spaCy's `SpanCategorizer`.

spaCy's spancat already has the pieces we need (suggesters, labels, negative class, greedy non-overlapping decoding,
`attrs["scores"]`); what changes is that our span model returns LOGITS, so the component owns normalisation
(softmax for single-label NER, sigmoid for multi-label spancat) and uses the matching cross-entropy gradient.
"""
import math
import warnings
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy
from spacy.language import Language
from spacy.pipeline.spancat import SpanCategorizer
from spacy.tokens import Doc, Span
from spacy.training import Example
from thinc.api import Config, Model, Optimizer
from thinc.shims import Shim
from thinc.types import Floats2d, Ragged

from .. import fork_safety
from ..memory import release_free_memory
from ..models.scorer_layer import fit_max_width, get_torch_scorer, scorer_shims
from ..models.suggesters import DEFAULT_MAX_WIDTH


def probabilities(ops: Any, logits: Floats2d, normalize: str, calibration: Dict[str, Any]) -> Floats2d:
    """Softmax or sigmoid of the logits on the model's device (`ops.xp`: nothing goes through host memory per
    batch), after the fitted calibration in `calibration` (a component's cfg): the logits divided by `temperature`
    plus `calibration_bias`, each a scalar or one per column. Prediction passes the cfg; training losses pass {}."""
    logits = ops.asarray2f(logits)
    n_columns = logits.shape[1]
    per_column = lambda value: ops.asarray1f(  # noqa: E731
        numpy.broadcast_to(numpy.asarray(value, dtype="f"), (n_columns,)))
    temperature = calibration.get("temperature", 1.0)
    if temperature != 1.0:
        logits = logits / per_column(temperature)
    bias = calibration.get("calibration_bias", 0.0)
    if bias != 0.0:  # Platt scaling's offset, per label (sigmoids only: it could change a softmax's argmax)
        logits = logits + per_column(bias)
    if normalize == "softmax":
        exp = ops.xp.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)
    return 1.0 / (1.0 + ops.xp.exp(-ops.xp.clip(logits, -60.0, 60.0)))


def update_with_head_factor(model: Model, sgd: Optimizer, head_shims: List[Shim], factor: float) -> None:
    """Apply `sgd` to every weight of `model`; the shims in `head_shims` (a fresh head) learn `factor` times faster."""
    head = {id(shim) for shim in head_shims}

    def scaled(key: Any, weights: Any, gradient: Any, *, lr_scale: float = 1.0) -> Any:
        return sgd(key, weights, gradient, lr_scale=lr_scale * factor)

    for node in model.walk():
        for shim in node.shims:
            shim.finish_update(scaled if id(shim) in head else sgd)
        for name in node.param_names:
            if node.has_grad(name):
                param, _ = sgd((node.id, name), node.get_param(name), node.get_grad(name))
                node.set_param(name, param)


class SpanBoundaryPipe(SpanCategorizer):
    """Base of `spanbert_ner` and `spanbert_spancat`. Subclasses define `_gold_spans` and `normalize`."""

    normalize = "sigmoid"
    # Decoding settings a user may change when loading a trained pipeline (spacy.load(..., config=...)); loading
    # must not put back the values saved at training time.
    runtime_settings: Tuple[str, ...] = ("threshold",)

    def __init__(
        self,
        *args: Any,
        negative_sample_rate: float = 1.0,
        seed: int = 0,
        head_learn_rate_factor: float = 10.0,
        **kwargs: Any,
    ) -> None:
        """spaCy's SpanCategorizer arguments, plus the training options both components share (kept in `cfg`)."""
        if not 0.0 < negative_sample_rate <= 1.0:
            raise ValueError(f"negative_sample_rate must be in (0, 1], got {negative_sample_rate}")
        super().__init__(*args, **kwargs)
        # temperature (divides the logits) and calibration_bias (added after): fitted after training by
        # `spacy spanbert-calibrate` (pipeline/calibration.py), saved in cfg
        self.cfg.update({"negative_sample_rate": negative_sample_rate, "seed": seed,
                         "head_learn_rate_factor": head_learn_rate_factor, "temperature": 1.0,
                         "calibration_bias": 0.0})

    def _gold_spans(self, doc: Doc) -> Iterable[Span]:
        raise NotImplementedError

    @property
    def _gold_source(self) -> str:
        """Where the gold spans are read from, for error messages."""
        raise NotImplementedError

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "SpanBoundaryPipe":
        return self._load_keeping_runtime_settings(super().from_bytes, bytes_data, exclude)

    def from_disk(self, path: Any, *, exclude: Iterable[str] = tuple()) -> "SpanBoundaryPipe":
        return self._load_keeping_runtime_settings(super().from_disk, path, exclude)

    def _load_keeping_runtime_settings(self, load: Callable, source: Any, exclude: Iterable[str]) -> "SpanBoundaryPipe":
        keep = {key: self.cfg[key] for key in self.runtime_settings}
        load(source, exclude=exclude)
        self.cfg.update(keep)
        # a suggester widened at load time (config override) must still be covered by the saved width embedding
        fit_max_width(self.model, self.max_width, self.name)
        return self

    @property
    def label_index(self) -> Dict[str, int]:
        """Each label's column in the scores."""
        return {label: i for i, label in enumerate(self.labels)}

    @property
    def n_columns(self) -> int:
        """Score columns: one per label, plus "no entity" where the scores are a softmax (ner)."""
        return len(self.labels) + (1 if self.add_negative_label else 0)

    @property
    def negative_column(self) -> Optional[int]:
        """The "no entity" column (ner's softmax), or None (spancat's independent sigmoids)."""
        return len(self.labels) if self.add_negative_label else None

    @property
    def max_width(self) -> Optional[int]:
        """Longest suggested span, when the suggester declares one (`spacy-spanbert.sentence_ngram_suggester.v2`)."""
        return getattr(self.suggester, "max_width", None)

    def _probabilities(self, logits: Floats2d, calibrated: bool = True) -> Floats2d:
        """Softmax (ner) or sigmoid (spancat) of the logits, calibrated or not (`probabilities`)."""
        return probabilities(self.model.ops, logits, self.normalize, self.cfg if calibrated else {})

    def predict(self, docs: Iterable[Doc]) -> Tuple[Ragged, Floats2d]:
        """Suggest spans and return (indices, probabilities in [0, 1]), both on the model's device."""
        fork_safety.guard()
        release_free_memory()  # the previous batch's activations are freed by now: keep resident memory flat
        docs = list(docs)
        indices = self.suggester(docs, ops=self.model.ops)
        if indices.lengths.sum() == 0:
            return indices, self.model.ops.alloc2f(0, self.n_columns)
        logits = self.model.predict((docs, indices))
        return indices, self._probabilities(logits)

    def update(self, examples: Iterable[Example], **kwargs: Any) -> Dict[str, float]:
        """spaCy's spancat update; first hands the previous step's freed memory back to the OS."""
        fork_safety.guard()
        release_free_memory()
        return super().update(examples, **kwargs)

    def aligned_gold_spans(self, eg: Example) -> List[Span]:
        """The example's gold spans (`_gold_spans` of its reference), aligned to its predicted doc's tokens."""
        return eg.get_aligned_spans_y2x(list(self._gold_spans(eg.reference)), allow_overlap=True)

    def get_loss(self, examples: Iterable[Example], spans_scores: Tuple[Ragged, Floats2d]) -> Tuple[float, Floats2d]:
        """Cross-entropy over suggested spans; the gradient is taken with respect to the LOGITS.

        Negative spans (gold label "none") are down-weighted by `negative_weight` and, when `negative_sample_rate`
        < 1, only a random share of them contributes (seeded per component).
        """
        spans, logits = spans_scores
        ops = self.model.ops
        probs = self._probabilities(logits, calibrated=False)
        n_spans = probs.shape[0]
        # gold alignment needs the span offsets on the host (small ints); the target is scattered on the device
        rows, cols = self._gold_cells(examples, ops.to_numpy(spans.dataXd), ops.to_numpy(spans.lengths))
        positive = numpy.zeros((n_spans,), dtype=bool)
        positive[rows] = True
        if self.add_negative_label:
            negative_rows = numpy.flatnonzero(~positive)
            rows = numpy.concatenate([rows, negative_rows])
            cols = numpy.concatenate([cols, numpy.full(negative_rows.shape, self.negative_column)])
        weights = numpy.ones((n_spans, 1), dtype="f")
        weights[~positive] = float(self.cfg["negative_weight"])
        rate = float(self.cfg.get("negative_sample_rate", 1.0))
        if rate < 1.0:
            dropped = (self._rng.random(n_spans) >= rate) & ~positive
            weights[dropped] = 0.0
        n_rows = max(float(weights.sum()), 1.0)
        target = ops.alloc2f(*probs.shape)
        if len(rows):
            target[ops.asarray1i(rows), ops.asarray1i(cols)] = 1.0
        weights_d = ops.asarray2f(weights)
        eps = 1e-8
        xp = ops.xp
        if self.normalize == "softmax":
            losses = -(target * xp.log(probs + eps)).sum(axis=1, keepdims=True)
        else:
            losses = -(target * xp.log(probs + eps) + (1 - target) * xp.log(1 - probs + eps)).sum(
                axis=1, keepdims=True
            )
        loss = (losses * weights_d).sum().item() / n_rows
        d_logits = (probs - target) * weights_d / n_rows
        return loss, d_logits

    def _gold_cells(self, examples: Iterable[Example], data: numpy.ndarray,
                    lengths: numpy.ndarray) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """(row, label column) of every suggested span that is gold, over the flat batch of suggested spans."""
        label_map = self.label_index
        rows: List[int] = []
        cols: List[int] = []
        offset = 0
        for i, eg in enumerate(examples):
            index = {(int(s), int(e)): offset + j for j, (s, e) in enumerate(data[offset : offset + lengths[i]])}
            for gold in self.aligned_gold_spans(eg):
                if gold.label_ not in label_map:
                    raise ValueError(
                        f"[{self.name}] gold label '{gold.label_}' was not seen at initialisation: include examples "
                        f"with it in nlp.initialize, or list it in [initialize.components.{self.name}.labels]"
                    )
                row = index.get((gold.start, gold.end))
                if row is not None:
                    rows.append(row)
                    cols.append(label_map[gold.label_])
            offset += lengths[i]
        return numpy.asarray(rows, dtype="int64"), numpy.asarray(cols, dtype="int64")

    def finish_update(self, sgd: Optimizer) -> None:
        """Update weights; the span scorer (a fresh head) may learn `head_learn_rate_factor` times faster."""
        update_with_head_factor(self.model, sgd, scorer_shims(self.model),
                                float(self.cfg.get("head_learn_rate_factor", 1.0)))

    @property
    def _rng(self) -> numpy.random.Generator:
        if not hasattr(self, "_rng_state"):
            self._rng_state = numpy.random.default_rng(int(self.cfg.get("seed", 0)))
        return self._rng_state

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[List[str]] = None,
    ) -> None:
        """Add labels (from `labels` or the gold data), report gold spans too wide to predict, build the model."""
        if labels is not None:
            for label in labels:
                self.add_label(label)
        sample: List[Example] = []
        too_wide = total = 0
        max_width = self.max_width
        n_examples = 0
        for eg in get_examples():
            n_examples += 1
            for span in self._gold_spans(eg.reference):
                total += 1
                if labels is None:
                    self.add_label(span.label_)
                if max_width is not None and len(span) > max_width:
                    too_wide += 1
            if len(sample) < 10:
                sample.append(eg)
        if not self.labels:
            raise ValueError(
                f"[{self.name}] the training data has no gold spans in {self._gold_source} ({total} spans in "
                f"{n_examples} examples): check [paths.train] and how it was converted, or list the labels in "
                f"[initialize.components.{self.name}.labels]"
            )
        if too_wide:
            warnings.warn(
                f"[{self.name}] {too_wide} of {total} gold spans are wider than max_width={max_width} tokens and can "
                f"never be predicted: raise [components.{self.name}.suggester] max_width to cover them"
            )
        docs = [eg.x for eg in sample if len(eg.x)]
        if not docs:
            raise ValueError(f"[{self.name}] initialisation needs at least one non-empty example doc")
        fit_max_width(self.model, max_width, self.name)
        spans = self.suggester(docs, ops=self.model.ops)
        Y = self.model.ops.alloc2f(spans.dataXd.shape[0], self.n_columns)
        self.model.initialize(X=(docs, spans), Y=Y)
        self._init_output_prior([eg for eg in sample if len(eg.x)], spans)

    def _init_output_prior(self, examples: List[Example], spans: Ragged) -> None:
        """Set the scorer's output bias to the share of candidate spans that are entities in the sample."""
        import torch

        data = self.model.ops.to_numpy(spans.dataXd).tolist()
        lengths = self.model.ops.to_numpy(spans.lengths).tolist()
        n_candidates = max(len(data), 1)
        doc_ids = [i for i, n in enumerate(lengths) for _ in range(n)]
        candidates = {(i, s, e) for i, (s, e) in zip(doc_ids, data)}
        n_positive = sum(
            (i, g.start, g.end) in candidates for i, eg in enumerate(examples) for g in self.aligned_gold_spans(eg)
        )
        rate = min(max(n_positive / n_candidates, 1e-4), 0.5)
        n_labels = len(self.labels)
        if self.add_negative_label:  # softmax: p(none) = e^b / (e^b + n_labels) = 1 - rate
            bias = [0.0] * n_labels + [math.log((1 - rate) * n_labels / rate)]
        else:  # sigmoid: each label is positive for rate / n_labels of the candidates
            share = rate / max(n_labels, 1)
            bias = [math.log(share / (1 - share))] * n_labels
        get_torch_scorer(self.model).set_output_bias(torch.tensor(bias))


# The factories' default model is the shipped recipe (configs/ner.cfg) with a transformer of its own, so that
# `nlp.add_pipe("spanbert_ner")` works in any pipeline; the checkpoint is SpanBERT's (the shipped configs set a local
# MiniLM through [paths] init_model instead). Case types cost nothing on a cased encoder and carry capitalisation
# into an uncased one.
DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "spacy-spanbert.SpanBoundaryModel.v2"
hidden_width = 256
max_width = null
use_interior = false
dropout = 0.1
mixed_precision = false

[model.tok2vec]
@architectures = "spacy-spanbert.SpanBERT.v4"
name = "SpanBERT/spanbert-base-cased"
tokenizer_config = {"use_fast": true}
transformer_config = {}
mixed_precision = false
grad_scaler_config = {}
quantize = null
cpu_bf16 = false
case_types = true

[model.tok2vec.get_spans]
@span_getters = "spacy-transformers.strided_spans.v1"
window = 128
stride = 96
"""

DEFAULT_SPAN_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]

# Settings both factories share, with their one default each (a factory adds its own: spans_key, threshold, ...).
# The longest candidate span is set on the suggester alone; the span model's width embedding follows it.
SHARED_DEFAULT_CONFIG: Dict[str, Any] = {
    "model": DEFAULT_SPAN_MODEL,
    "suggester": {"@misc": "spacy-spanbert.sentence_ngram_suggester.v2", "max_width": DEFAULT_MAX_WIDTH,
                  "within_lines": True},
    "negative_weight": 1.0,
    "negative_sample_rate": 1.0,
    "seed": 0,
    "head_learn_rate_factor": 10.0,
}

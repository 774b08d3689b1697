"""`spanbert_rel`: relation extraction between entity spans, on the shared SpanBERT transformer.

Candidates are ordered pairs of distinct entities from `doc.ents` (or a `doc.spans` group, which may nest), within a
sentence and a token distance. Each pair is scored from the arguments' boundary vectors, widths and entity types,
the pooled context between them and their distance (`RelationScorer`); a softmax over the labels + "no relation"
(or, with `multi_label`, a sigmoid per label) decides. In training the candidates are the gold entities' pairs, so
relations learn while `spanbert_ner` learns; at prediction and evaluation they are the entities the pipeline
predicted. Writes `doc._.spanbert_rels` (see `spacy_spanbert.relations`).
"""
import warnings
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, set_dropout_rate
from thinc.types import Floats2d, Ragged

from .. import fork_safety
from ..memory import release_free_memory
from ..models.relation_model import get_relation_scorer, set_entity_types
from ..relations import candidate_pairs, entity_spans, get_relations, make_record, set_relations
from .base import probabilities, update_with_head_factor

DEFAULT_REL_MODEL = Config().from_str("""
[model]
@architectures = "spacy-spanbert.RelationModel.v1"
hidden_width = 256
max_width = 16
max_context = 64
dropout = 0.1
representation = "boundary_context"

[model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 0.1
upstream = "*"

[model.tok2vec.pooling]
@layers = "reduce_mean.v1"
""")["model"]

# per doc: the entities and the (head index, tail index) pairs that were scored
Candidates = List[Tuple[List[Span], List[Tuple[int, int]]]]


@Language.factory(
    "spanbert_rel",
    assigns=["doc._.spanbert_rels"],
    default_config={
        "model": DEFAULT_REL_MODEL,
        "spans_key": None,
        "max_distance": 100,
        "within_sentence": True,
        "type_constraints": False,
        "multi_label": False,
        "threshold": None,
        "negative_weight": 1.0,
        "head_learn_rate_factor": 10.0,
        "scorer": {"@scorers": "spacy-spanbert.relation_scorer.v1"},
    },
    default_score_weights={"rel_micro_f": 1.0, "rel_micro_p": 0.0, "rel_micro_r": 0.0, "rel_boundaries_f": 0.0,
                           "rel_per_label": None},
)
def make_spanbert_rel(nlp: Language, name: str, model: Model, spans_key: Optional[str], max_distance: int,
                      within_sentence: bool, type_constraints: bool, multi_label: bool, threshold: Optional[float],
                      negative_weight: float, head_learn_rate_factor: float,
                      scorer: Optional[Callable]) -> "SpanRelationExtractor":
    """Create a relation extractor over entity spans.

    model (Model[Tuple[List[Doc], Ragged], Floats2d]): Pair model, e.g. `spacy-spanbert.RelationModel.v1`.
    spans_key (Optional[str]): Read entities from `doc.spans[spans_key]` (nested allowed); None: `doc.ents`.
    max_distance (int): Largest gap in tokens between two arguments of a candidate pair.
    within_sentence (bool): Pair only entities of one sentence (a doc without sentence boundaries is one).
    type_constraints (bool): Predict a label only for the (head type, tail type) combinations seen with it in
        training.
    multi_label (bool): A sigmoid per label (several labels per pair) instead of a softmax with "no relation".
    threshold (Optional[float]): Minimum probability for a relation to be written (multi_label: default 0.5).
    negative_weight (float): Loss weight of pairs with no relation.
    head_learn_rate_factor (float): Learning-rate multiplier of the relation scorer (a fresh head).
    """
    return SpanRelationExtractor(nlp.vocab, model, name, spans_key=spans_key, max_distance=max_distance,
                                 within_sentence=within_sentence, type_constraints=type_constraints,
                                 multi_label=multi_label, threshold=threshold, negative_weight=negative_weight,
                                 head_learn_rate_factor=head_learn_rate_factor, scorer=scorer)


class SpanRelationExtractor(TrainablePipe):
    """Directed relations between entity spans; settings and the labels learned live in `cfg`."""

    # settings a user may change at load time (spacy.load(..., config=...)) without the saved value coming back
    runtime_settings = ("threshold",)

    def __init__(self, vocab: Vocab, model: Model, name: str = "spanbert_rel", *, spans_key: Optional[str] = None,
                 max_distance: int = 100, within_sentence: bool = True, type_constraints: bool = False,
                 multi_label: bool = False, threshold: Optional[float] = None, negative_weight: float = 1.0,
                 head_learn_rate_factor: float = 10.0, scorer: Optional[Callable] = None) -> None:
        if max_distance < 0:
            raise ValueError(f"[{name}] max_distance must be >= 0, got {max_distance}")
        self.vocab, self.model, self.name, self.scorer = vocab, model, name, scorer
        self.cfg: Dict[str, Any] = {
            "labels": [], "entity_labels": [], "allowed_types": {}, "spans_key": spans_key,
            "max_distance": max_distance, "within_sentence": within_sentence, "type_constraints": type_constraints,
            "multi_label": multi_label, "threshold": threshold, "negative_weight": negative_weight,
            "head_learn_rate_factor": head_learn_rate_factor,
            # fitted after training by `spacy spanbert-calibrate` (temperature; per-label Platt when multi_label)
            "temperature": 1.0, "calibration_bias": 0.0,
        }
        self._warned_labels: set = set()

    @property
    def labels(self) -> Tuple[str, ...]:
        return tuple(self.cfg["labels"])

    def add_label(self, label: str) -> int:
        if label in self.cfg["labels"]:
            return 0
        self.cfg["labels"].append(label)
        return 1

    @property
    def _n_out(self) -> int:
        return len(self.labels) + (0 if self.cfg["multi_label"] else 1)

    @property
    def normalize(self) -> str:
        """"softmax" over the labels + "no relation", or "sigmoid" per label (`multi_label`)."""
        return "sigmoid" if self.cfg["multi_label"] else "softmax"

    @property
    def negative_column(self) -> Optional[int]:
        """The "no relation" column (softmax), or None (multi_label's independent sigmoids)."""
        return None if self.cfg["multi_label"] else len(self.labels)

    # --- candidates -------------------------------------------------------------------------------------------
    def _candidates(self, doc: Doc, entities: List[Span]) -> List[Tuple[int, int]]:
        return candidate_pairs(doc, entities, int(self.cfg["max_distance"]), bool(self.cfg["within_sentence"]))

    def _rows(self, entities: List[Span], pairs: List[Tuple[int, int]]) -> numpy.ndarray:
        """(head start, head end, tail start, tail end, head type, tail type) per pair; unseen types share one id."""
        types = {label: i for i, label in enumerate(self.cfg["entity_labels"])}
        unseen = len(types)
        rows = [(entities[i].start, entities[i].end, entities[j].start, entities[j].end,
                 types.get(entities[i].label_, unseen), types.get(entities[j].label_, unseen)) for i, j in pairs]
        return numpy.asarray(rows, dtype="int32").reshape((-1, 6))

    def _ragged(self, rows: List[numpy.ndarray]) -> Ragged:
        ops = self.model.ops
        data = numpy.concatenate(rows) if rows else numpy.zeros((0, 6), dtype="int32")
        return Ragged(ops.asarray2i(data), ops.asarray1i(numpy.asarray([len(r) for r in rows], dtype="int32")))

    # --- prediction -------------------------------------------------------------------------------------------
    def predict(self, docs: Iterable[Doc]) -> Tuple[Candidates, Floats2d]:
        """Score every candidate pair of every doc: (candidates per doc, calibrated probabilities on the model's
        device)."""
        candidates, logits = self.logits(docs)
        return candidates, self._probabilities(logits)

    def logits(self, docs: Iterable[Doc]) -> Tuple[Candidates, Floats2d]:
        """(candidates per doc, the model's raw logits for them), what calibration is fitted on."""
        fork_safety.guard()
        release_free_memory()
        docs = list(docs)
        candidates: Candidates = []
        for doc in docs:
            entities = entity_spans(doc, self.cfg["spans_key"], self.name)
            candidates.append((entities, self._candidates(doc, entities)))
        pairs = self._ragged([self._rows(ents, pairs) for ents, pairs in candidates])
        if not pairs.dataXd.shape[0]:
            return candidates, self.model.ops.alloc2f(0, self._n_out)
        return candidates, self.model.predict((docs, pairs))

    def _probabilities(self, logits: Floats2d, calibrated: bool = True) -> Floats2d:
        """Softmax over labels + "no relation", or a sigmoid per label, calibrated or not (`base.probabilities`)."""
        return probabilities(self.model.ops, logits, self.normalize, self.cfg if calibrated else {})

    def decode(self, entities: List[Span], pair: Tuple[int, int], p: numpy.ndarray) -> List[int]:
        """The labels written for one pair with output probabilities `p`: the most probable output if it is a
        label (softmax), or every label at or above the threshold (multi_label); labels the pair's entity types
        never took in training are skipped with `type_constraints`."""
        cut = self.cfg["threshold"]
        if cut is None and self.cfg["multi_label"]:
            cut = 0.5
        i, j = pair
        masked = p * self._allowed_mask(entities[i].label_, entities[j].label_)
        if self.cfg["multi_label"]:
            return [k for k in range(len(self.labels)) if masked[k] >= cut]
        best = int(masked.argmax())
        return [best] if best < len(self.labels) and (cut is None or masked[best] >= cut) else []

    def set_annotations(self, docs: Iterable[Doc], scores: Tuple[Candidates, Floats2d]) -> None:
        """Write each doc's relations (`doc._.spanbert_rels`), each pair's labels as `decode` chooses them."""
        candidates, probs = scores
        probs = self.model.ops.to_numpy(probs)
        row = 0
        for doc, (entities, pairs) in zip(docs, candidates):
            records = []
            for pair in pairs:
                p = probs[row]
                row += 1
                records += [make_record(entities[pair[0]], entities[pair[1]], self.labels[k], float(p[k]))
                            for k in self.decode(entities, pair, p)]
            set_relations(doc, records)

    def _allowed_mask(self, head_type: str, tail_type: str) -> numpy.ndarray:
        """1 for each output a pair of these entity types may take (all, unless type_constraints), 0 else."""
        mask = numpy.ones((self._n_out,), dtype="f")
        if self.cfg["type_constraints"]:
            for k, label in enumerate(self.labels):
                if [head_type, tail_type] not in self.cfg["allowed_types"].get(label, []):
                    mask[k] = 0.0
        return mask

    # --- training ---------------------------------------------------------------------------------------------
    def _gold_candidates(self, eg: Example) -> Tuple[List[Span], List[Tuple[int, int]], List[List[int]]]:
        """The reference's entities aligned to the predicted doc, their candidate pairs (sentences as the reference
        has them) and each pair's gold label indices."""
        key = self.cfg["spans_key"]
        gold_entities = entity_spans(eg.reference, key, self.name)
        pairs = self._candidates(eg.reference, gold_entities)
        aligned = {}
        for i, span in enumerate(gold_entities):
            found = eg.get_aligned_spans_y2x([span], allow_overlap=True)
            if found:
                aligned[i] = found[0]
        index = {label: k for k, label in enumerate(self.labels)}
        gold: Dict[Tuple[int, int, int, int], List[int]] = {}
        for record in get_relations(eg.reference):
            if record["label"] in index:
                gold.setdefault((*record["head"], *record["tail"]), []).append(index[record["label"]])
        entities = [aligned.get(i, gold_entities[i]) for i in range(len(gold_entities))]
        kept = [(i, j) for i, j in pairs if i in aligned and j in aligned]
        targets = [gold.get((gold_entities[i].start, gold_entities[i].end, gold_entities[j].start,
                             gold_entities[j].end), []) for i, j in kept]
        return entities, kept, targets

    def update(self, examples: Iterable[Example], *, drop: float = 0.0, sgd: Optional[Optimizer] = None,
               losses: Optional[Dict[str, float]] = None) -> Dict[str, float]:
        """Learn from the gold entities' pairs. The model runs even on a batch without pairs, so the shared
        transformer, which waits for every listener's gradient, still updates."""
        fork_safety.guard()
        release_free_memory()
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "SpanRelationExtractor.update")
        candidates, rows, targets = [], [], []
        for eg in examples:
            entities, pairs, gold = self._gold_candidates(eg)
            candidates.append((entities, pairs))
            rows.append(self._rows(entities, pairs))
            targets.extend(gold)
        set_dropout_rate(self.model, drop)
        logits, backprop = self.model.begin_update(([eg.predicted for eg in examples], self._ragged(rows)))
        loss, d_logits = self._loss(logits, targets)
        backprop(d_logits)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def get_loss(self, examples: Iterable[Example], scores: Floats2d) -> Tuple[float, Floats2d]:
        """Loss and gradient of the logits of the gold-entity pairs of `examples` (in `update`'s order)."""
        targets = [t for eg in examples for t in self._gold_candidates(eg)[2]]
        return self._loss(scores, targets)

    def _loss(self, logits: Floats2d, targets: List[List[int]]) -> Tuple[float, Floats2d]:
        """Softmax cross-entropy over labels + "no relation" (or a sigmoid per label); no-relation pairs weigh
        `negative_weight`. The gradient is taken with respect to the logits, on the model's device."""
        ops = self.model.ops
        n_pairs = len(targets)
        if n_pairs == 0:
            return 0.0, ops.alloc2f(0, self._n_out)
        target = numpy.zeros((n_pairs, self._n_out), dtype="f")
        weights = numpy.ones((n_pairs, 1), dtype="f")
        for row, labels in enumerate(targets):
            if labels:
                target[row, labels] = 1.0
            else:
                weights[row] = float(self.cfg["negative_weight"])
                if not self.cfg["multi_label"]:
                    target[row, -1] = 1.0
        if not self.cfg["multi_label"]:  # a pair with two gold labels: each half (rare; CoNLL04 has none)
            target /= target.sum(axis=1, keepdims=True)
        probs = self._probabilities(logits, calibrated=False)
        target_d, weights_d = ops.asarray2f(target), ops.asarray2f(weights)
        xp, eps, norm = ops.xp, 1e-8, max(float(weights.sum()), 1.0)
        if self.cfg["multi_label"]:
            losses = -(target_d * xp.log(probs + eps) + (1 - target_d) * xp.log(1 - probs + eps)).sum(axis=1)
        else:
            losses = -(target_d * xp.log(probs + eps)).sum(axis=1)
        loss = float((losses * weights_d[:, 0]).sum().item()) / norm
        return loss, (probs - target_d) * weights_d / norm

    def finish_update(self, sgd: Optimizer) -> None:
        """Update weights; the relation scorer (a fresh head) learns `head_learn_rate_factor` times faster."""
        head = self.model.get_ref("scorer")
        update_with_head_factor(self.model, sgd, [s for node in head.walk() for s in node.shims],
                                float(self.cfg["head_learn_rate_factor"]))

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None,
                   labels: Optional[List[str]] = None) -> None:
        """Check that entities reach the component, learn the labels, entity types and type combinations from the
        gold data, and build the model."""
        if nlp is not None:
            self._check_entity_source(nlp)
        for label in labels or []:
            self.add_label(label)
        entity_labels, allowed, sample = set(), {}, []
        for n, eg in enumerate(get_examples()):
            entities = entity_spans(eg.reference, self.cfg["spans_key"], self.name)
            entity_labels.update(span.label_ for span in entities)
            known = {(span.start, span.end): span.label_ for span in entities}
            for record in get_relations(eg.reference):
                head, tail = tuple(record["head"]), tuple(record["tail"])
                if head not in known or tail not in known:
                    raise ValueError(
                        f"[{self.name}] training example {n}: relation {record['label']!r} {list(head)} -> "
                        f"{list(tail)} has an argument that is not one of its entities "
                        f"({'doc.ents' if self.cfg['spans_key'] is None else 'doc.spans[' + repr(self.cfg['spans_key']) + ']'}): "
                        f"add the entity or drop the relation in the training data")
                if labels is None:
                    self.add_label(record["label"])
                combos = allowed.setdefault(record["label"], [])
                if [known[head], known[tail]] not in combos:
                    combos.append([known[head], known[tail]])
            if len(sample) < 10 and len(eg.x) and self._candidates(eg.reference, entities):
                sample.append(eg)
        if not self.labels:
            raise ValueError(f"[{self.name}] the training data has no relations in doc._.spanbert_rels: convert it "
                             f"with scripts/convert_relations.py (or set the records), or list the labels in "
                             f"[initialize.components.{self.name}.labels]")
        if not sample:
            raise ValueError(f"[{self.name}] no training example has two entities to pair: check the entities in "
                             f"the training data and [components.{self.name}] max_distance / within_sentence")
        self.cfg["entity_labels"] = sorted(entity_labels)
        self.cfg["allowed_types"] = allowed
        set_entity_types(self.model, len(entity_labels) + 1)
        rows, targets = [], []
        for eg in sample:
            entities, pairs, gold = self._gold_candidates(eg)
            rows.append(self._rows(entities, pairs))
            targets.extend(gold)
        pairs = self._ragged(rows)
        self.model.initialize(X=([eg.x for eg in sample], pairs),
                              Y=self.model.ops.alloc2f(pairs.dataXd.shape[0], self._n_out))
        self._init_output_prior(targets)

    def _check_entity_source(self, nlp: Language) -> None:
        """One error when no component before this one writes the entities it reads."""
        wanted = "doc.ents" if self.cfg["spans_key"] is None else "doc.spans"
        names = nlp.pipe_names
        before = names[: names.index(self.name)] if self.name in names else names
        if not any(wanted in nlp.get_pipe_meta(name).assigns for name in before):
            raise ValueError(
                f"[{self.name}] no component before it writes {wanted} ({before or 'it is first'}): add spanbert_ner "
                f"(or ner, spanbert_spancat with spans_key) before it, or source a trained entity component")

    def _init_output_prior(self, targets: List[List[int]]) -> None:
        """Start the output bias at the share of pairs with each label (log-odds): most pairs have no relation."""
        import torch

        n = max(len(targets), 1)
        counts = numpy.zeros((len(self.labels),))
        for labels in targets:
            counts[labels] += 1
        rate = numpy.clip(counts / n, 1e-3, 0.5)
        if self.cfg["multi_label"]:
            bias = numpy.log(rate / (1 - rate))
        else:  # softmax: logit_k - logit_none = log(rate_k / rate_none)
            none = max(1.0 - float(counts.sum()) / n, 1e-3)
            bias = numpy.append(numpy.log(rate / none), 0.0)
        get_relation_scorer(self.model).set_output_bias(torch.tensor(bias, dtype=torch.float32))

    # --- evaluation and loading -------------------------------------------------------------------------------
    def score(self, examples: Iterable[Example], **kwargs: Any) -> Dict[str, Any]:
        """The relation scores; gold labels the component never learned are named once in a warning."""
        examples = list(examples)
        unseen = {r["label"] for eg in examples for r in get_relations(eg.reference)} - set(self.labels)
        if unseen - self._warned_labels:
            self._warned_labels |= unseen
            warnings.warn(f"[{self.name}] evaluation data has relation labels training never saw: "
                          f"{sorted(unseen)} (they count as missed): add examples with them to the training data")
        return self.scorer(examples, **kwargs) if self.scorer is not None else {}

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "SpanRelationExtractor":
        return self._keeping_runtime_settings(super().from_bytes, bytes_data, exclude)

    def from_disk(self, path: Any, *, exclude: Iterable[str] = tuple()) -> "SpanRelationExtractor":
        return self._keeping_runtime_settings(super().from_disk, path, exclude)

    def _keeping_runtime_settings(self, load: Callable, source: Any, exclude: Iterable[str]) -> Any:
        keep = {key: self.cfg[key] for key in self.runtime_settings}
        load(source, exclude=exclude)
        self.cfg.update(keep)
        set_entity_types(self.model, len(self.cfg["entity_labels"]) + 1)
        return self

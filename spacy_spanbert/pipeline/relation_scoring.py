"""`spacy-spanbert.relation_scorer.v1`: micro P/R/F of relations, strict and boundaries-only, and per label.

Strict (`rel_micro_*`, the measure SpERT and most joint entity-relation papers report): a predicted relation counts
only if its label and both arguments' boundaries and entity types match a gold relation. Boundaries
(`rel_boundaries_*`): label and boundaries, types ignored. Relations are compared by character offsets, so a
predicted doc tokenised differently from the gold one is scored fairly. A gold relation whose arguments were never
predicted is a false negative like any other: recall is over every gold relation, not over candidate pairs.
"""
from typing import Any, Dict, Iterable, Set, Tuple

from spacy.scorer import PRFScore
from spacy.tokens import Doc
from spacy.training import Example

from ..relations import get_relations

Key = Tuple[int, int, str, int, int, str, str]


def relation_keys(doc: Doc) -> Set[Key]:
    """(head chars, head type, tail chars, tail type, label) of every relation record on the doc."""
    keys = set()
    for record in get_relations(doc):
        head, tail = doc[record["head"][0] : record["head"][1]], doc[record["tail"][0] : record["tail"][1]]
        keys.add((head.start_char, head.end_char, str(record.get("head_label") or ""),
                  tail.start_char, tail.end_char, str(record.get("tail_label") or ""), record["label"]))
    return keys


def _untyped(keys: Set[Key]) -> Set[Tuple[int, int, int, int, str]]:
    return {(hs, he, ts, te, label) for hs, he, _, ts, te, _, label in keys}


def score_relations(examples: Iterable[Example], **kwargs: Any) -> Dict[str, Any]:
    """Score `doc._.spanbert_rels` of the predicted docs against the reference docs'.

    RETURNS (Dict[str, Any]): rel_micro_p/r/f (strict), rel_boundaries_p/r/f, rel_per_label {label: {p, r, f}}.
    """
    strict, boundaries = PRFScore(), PRFScore()
    per_label: Dict[str, PRFScore] = {}
    for eg in examples:
        gold, pred = relation_keys(eg.reference), relation_keys(eg.predicted)
        strict.score_set(pred, gold)
        boundaries.score_set(_untyped(pred), _untyped(gold))
        for label in {key[-1] for key in gold | pred}:
            per_label.setdefault(label, PRFScore()).score_set({k for k in pred if k[-1] == label},
                                                               {k for k in gold if k[-1] == label})
    scores: Dict[str, Any] = {}
    for name, prf in (("rel_micro", strict), ("rel_boundaries", boundaries)):
        scores.update({f"{name}_p": prf.precision, f"{name}_r": prf.recall, f"{name}_f": prf.fscore})
    scores["rel_per_label"] = {label: prf.to_dict() for label, prf in sorted(per_label.items())}
    return scores


def make_relation_scorer():
    """The registered scorer (`[components.spanbert_rel.scorer]`)."""
    return score_relations

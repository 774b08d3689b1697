"""Relation data in a simple JSON layout -> spaCy Docs with entities and `doc._.spanbert_rels`.

The layout (CoNLL04's "unified" JSON, and the documented input for your own data) is a list of records, one per
sentence (or document):

    {"tokens": ["John", "lives", "in", "Boston", "."],
     "entities": [[0, 1, "Peop"], [3, 4, "Loc"]],
     "relations": [[0, 1, 3, 4, "Live_In"]]}

Entity = [start, end, type] in tokens, end exclusive; relation = [head_start, head_end, tail_start, tail_end, label],
directed head -> tail; every relation argument must be one of the record's entities. Entities go to `doc.ents`, or,
with `spans_key`, to `doc.spans[spans_key]`, where they may nest or overlap. Every problem is one ValueError naming
the record and the fix, raised before any Doc is returned.
"""
import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from spacy.tokens import Doc, Span
from spacy.vocab import Vocab

from .relations import make_record, set_relations

def read_records(path: Path) -> List[Dict[str, Any]]:
    """A JSON list of records (or JSON Lines, one record per line), with one clear error for anything else."""
    text = Path(path).read_text(encoding="utf8")
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as err:
            raise ValueError(f"{path}: not JSON or JSON Lines ({err}): write a list of records "
                             f"{{'tokens', 'entities', 'relations'}}") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: the top level is a {type(data).__name__}, not a list of records: wrap the records "
                         f"in [...]")
    return data


def record_to_doc(vocab: Vocab, record: Dict[str, Any], where: str, spans_key: Optional[str] = None) -> Doc:
    """One record -> one Doc (a sentence: its first token starts the only sentence). `where` names the record in
    errors, e.g. "train.json record 12". Spaces are left unknown, as `spacy convert` does for CoNLL: spaCy's corpus
    readers then keep the record's own tokens, which the entity and relation offsets refer to."""
    tokens = record.get("tokens") if isinstance(record, dict) else None
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) and t for t in tokens):
        raise ValueError(f"{where}: 'tokens' must be a non-empty list of non-empty strings: fix the record")
    doc = Doc(vocab, words=tokens, sent_starts=[True] + [False] * (len(tokens) - 1))
    entities: Dict[tuple, Span] = {}
    for entity in record.get("entities", []):
        if not (isinstance(entity, list) and len(entity) == 3 and isinstance(entity[2], str)
                and all(isinstance(x, int) for x in entity[:2]) and 0 <= entity[0] < entity[1] <= len(tokens)):
            raise ValueError(f"{where}: entity {entity!r} is not [start, end, type] with 0 <= start < end <= "
                             f"{len(tokens)} tokens: fix its offsets")
        entities[(entity[0], entity[1])] = Span(doc, entity[0], entity[1], label=entity[2])
    spans = list(entities.values())
    if spans_key is None:
        try:
            doc.ents = spans
        except ValueError:
            raise ValueError(f"{where}: entities overlap, which doc.ents cannot hold: convert with a spans key "
                             f"(--spans-key KEY; then set spans_key in spanbert_rel) or remove the overlap") from None
    else:
        doc.spans[spans_key] = spans
    records = []
    for relation in record.get("relations", []):
        if not (isinstance(relation, list) and len(relation) == 5 and isinstance(relation[4], str)):
            raise ValueError(f"{where}: relation {relation!r} is not [head_start, head_end, tail_start, tail_end, "
                             f"label]: fix the record")
        head, tail = entities.get(tuple(relation[0:2])), entities.get(tuple(relation[2:4]))
        if head is None or tail is None:
            missing = relation[0:2] if head is None else relation[2:4]
            raise ValueError(f"{where}: relation {relation!r} has an argument {missing} that is not an entity of its "
                             f"sentence: add [{missing[0]}, {missing[1]}, TYPE] to 'entities' or drop the relation")
        records.append(make_record(head, tail, relation[4]))
    set_relations(doc, records)
    return doc


def records_to_docs(vocab: Vocab, records: Iterable[Dict[str, Any]], source: str,
                    spans_key: Optional[str] = None) -> List[Doc]:
    """Every record of a file -> Docs; the first bad record raises (naming `source` and its index)."""
    return [record_to_doc(vocab, record, f"{source} record {i}", spans_key) for i, record in enumerate(records)]

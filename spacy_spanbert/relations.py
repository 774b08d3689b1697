"""Relations between entity spans on a Doc: where they are stored, and how to read them.

`spanbert_rel` writes, and the converter writes for gold data, a list of plain records in `doc._.spanbert_rels`
(stored in `doc.user_data`, so a `DocBin(store_user_data=True)` keeps them):

    {"head": [start, end], "head_label": "Peop", "tail": [start, end], "tail_label": "Loc",
     "label": "Live_In", "score": 0.97}

Offsets are token offsets, `end` exclusive; the relation is directed head -> tail; `score` is the component's
probability (None in gold data). The extension name carries the package's prefix, so it cannot clash with the
`rel` extension of spaCy's tutorial or other relation plugins.
"""
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from spacy.tokens import Doc, Span

EXTENSION = "spanbert_rels"
Record = Dict[str, Any]


def ensure_extension() -> None:
    """Register `Doc._.spanbert_rels` (default None: a doc no relation component has seen) once per process."""
    if not Doc.has_extension(EXTENSION):
        Doc.set_extension(EXTENSION, default=None)


def get_relations(doc: Doc) -> List[Record]:
    """The doc's relation records (an empty list where none were set); offsets as lists, as they were set (a
    DocBin's msgpack gives them back as tuples)."""
    ensure_extension()
    return [_plain(r) for r in getattr(doc._, EXTENSION) or []]


def set_relations(doc: Doc, records: Iterable[Record]) -> None:
    """Store relation records on the doc, sorted by head then tail offsets."""
    ensure_extension()
    ordered = sorted(records, key=lambda r: (tuple(r["head"]), tuple(r["tail"]), r["label"]))
    setattr(doc._, EXTENSION, [_plain(r) for r in ordered])


def _plain(record: Record) -> Record:
    """A copy of the record with its offsets as lists (msgpack, which DocBin uses, turns them into tuples)."""
    return dict(record, head=list(record["head"]), tail=list(record["tail"]))


def make_record(head: Span, tail: Span, label: str, score: Optional[float] = None) -> Record:
    """A relation record between two spans of the same doc."""
    return {"head": [head.start, head.end], "head_label": head.label_, "tail": [tail.start, tail.end],
            "tail_label": tail.label_, "label": label, "score": None if score is None else float(score)}


def relation_spans(doc: Doc) -> Iterator[Tuple[Span, Span, str, Optional[float]]]:
    """Yield (head Span, tail Span, label, score) for each relation on the doc; the spans carry the entity labels.

    >>> for head, tail, label, score in relation_spans(nlp("Obama was born in Hawaii.")):
    ...     print(head.text, label, tail.text, score)
    """
    for record in get_relations(doc):
        head = Span(doc, *record["head"], label=record.get("head_label") or "")
        tail = Span(doc, *record["tail"], label=record.get("tail_label") or "")
        yield head, tail, record["label"], record.get("score")


def entity_spans(doc: Doc, spans_key: Optional[str], component: str) -> List[Span]:
    """The entities relations are read between: `doc.ents`, or the group `doc.spans[spans_key]` (which may nest).

    A missing group is one error naming the keys the doc has."""
    if spans_key is None:
        return list(doc.ents)
    if spans_key not in doc.spans:
        raise ValueError(f"[{component}] doc.spans has no key '{spans_key}' (it has {sorted(doc.spans.keys())}): "
                         f"set [components.{component}] spans_key to the key your entity component writes, or null "
                         f"for doc.ents")
    return list(doc.spans[spans_key])


def candidate_pairs(doc: Doc, entities: Sequence[Span], max_distance: int,
                    within_sentence: bool) -> List[Tuple[int, int]]:
    """Ordered pairs (i, j), i != j, of entities that may be related: in one sentence when `within_sentence` and the
    doc has sentence boundaries (a doc without them is one segment), at most `max_distance` tokens apart (the gap
    between the two spans). Nested or overlapping entities pair up too, except a span with itself."""
    if len(entities) < 2:
        return []
    sentence = _sentence_ids(doc) if within_sentence else None
    pairs = []
    for i, head in enumerate(entities):
        for j, tail in enumerate(entities):
            if i == j or (head.start == tail.start and head.end == tail.end):
                continue
            if sentence is not None and sentence[head.start] != sentence[tail.start]:
                continue
            gap = max(tail.start - head.end, head.start - tail.end, 0)
            if gap <= max_distance:
                pairs.append((i, j))
    return pairs


def _sentence_ids(doc: Doc) -> Optional[List[int]]:
    """Sentence index of every token, or None where the doc has no sentence boundaries (one segment)."""
    if not (doc.has_annotation("SENT_START") or doc.has_annotation("DEP")):
        return None
    ids, current = [], -1
    for token in doc:
        if token.is_sent_start or token.i == 0:
            current += 1
        ids.append(current)
    return ids

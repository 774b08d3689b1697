"""The inputs of `MarkerRelationModel.v1`: each candidate pair's text window, wordpieces and typed markers.

A pair is encoded in a window of the doc's tokens: the whole doc when it has at most `window` tokens, else the first
window of a grid (`window` tokens, stride `window // 2`) that holds both arguments, else a window centred on them.
Windows depend only on the tokens, not on sentence boundaries, so a pair sees the same context in training (where
spaCy's predicted docs carry no sentences) and at prediction. Pairs with the same window share one encoded copy of
it, `max_pairs` at a time. Markers are <S:type> </S:type> <O:type> </O:type> per pair, at the position ids of their
argument's first and last wordpiece (`nn.relation_markers`).
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy
from spacy.tokens import Doc

from ..nn.relation_markers import MARKER_KINDS, marker_id
from .case_types import case_type_ids


@dataclass
class MarkedSequence:
    """One encoded copy of a window: its wordpieces followed by the markers of some pairs (`pairs`: their rows in the
    batch's Ragged). Per slot: wordpiece id, marker table row (-1 for text), position id, token type."""

    ids: numpy.ndarray
    marker_ids: numpy.ndarray
    positions: numpy.ndarray
    types: numpy.ndarray
    n_text: int
    pairs: List[int]


def pair_window(doc_len: int, lo: int, hi: int, window: int) -> Tuple[int, int]:
    """The tokens [start, end) a pair whose arguments span [lo, hi) is encoded in (see the module docstring)."""
    if doc_len <= window:
        return 0, doc_len
    stride = max(1, window // 2)
    start = (lo // stride) * stride
    if hi <= start + window:
        return start, min(doc_len, start + window)
    if hi - lo >= window:  # arguments further apart than a window: just what lies between them
        return lo, hi
    start = max(0, min(lo - (window - (hi - lo)) // 2, doc_len - window))
    return start, start + window


def marked_sequences(docs: List[Doc], rows: numpy.ndarray, lengths: numpy.ndarray, tokenizer: Any,
                     case_offset: Optional[int], n_types: int, window: int, max_pairs: int) -> List[MarkedSequence]:
    """Every pair's window, encoded once per group of at most `max_pairs` of its pairs, with their markers.

    rows (n_pairs, 6): head start, head end, tail start, tail end, head type, tail type, in token offsets of the
    pair's doc; lengths: the pairs of each doc."""
    sequences, offset = [], 0
    for doc, n in zip(docs, lengths):
        windows: Dict[Tuple[int, int], List[int]] = {}
        for k in range(offset, offset + int(n)):
            hs, he, ts, te = (int(v) for v in rows[k, :4])
            windows.setdefault(pair_window(len(doc), min(hs, ts), max(he, te), window), []).append(k)
        offset += int(n)
        for (start, end), members in windows.items():
            ids, types, first, last = encode_window(doc, start, end, tokenizer, case_offset)
            for i in range(0, len(members), max_pairs):
                sequences.append(_with_markers(ids, types, first, last, rows, members[i : i + max_pairs], start,
                                               n_types))
    return sequences


def encode_window(doc: Doc, start: int, end: int, tokenizer: Any,
                  case_offset: Optional[int]) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """The window's wordpieces (with the tokenizer's special tokens, cut at its length limit), their token types, and
    for each spaCy token of the window its first and last wordpiece. A token without wordpieces (whitespace) gets
    the next wordpiece; one past the tokenizer's limit (a window of unusually long words) gets the last one."""
    span = doc[start:end]
    text = span.text
    encoding = tokenizer(text, return_offsets_mapping=True, truncation=True, max_length=int(tokenizer.model_max_length))
    ids = numpy.asarray(encoding["input_ids"], dtype="int64")
    offsets = numpy.asarray(encoding["offset_mapping"], dtype="int64").reshape((-1, 2))
    types = (numpy.zeros(len(ids), dtype="int64") if case_offset is None
             else case_type_ids([text], offsets[None], case_offset)[0])
    real = offsets[:, 1] > offsets[:, 0]
    last_real = int(numpy.flatnonzero(real)[-1]) if real.any() else 0
    base = span.start_char
    first, last = numpy.zeros(len(span), dtype="int64"), numpy.zeros(len(span), dtype="int64")
    for i, token in enumerate(span):
        lo, hi = token.idx - base, token.idx - base + len(token.text)
        inside = numpy.flatnonzero(real & (offsets[:, 0] < hi) & (offsets[:, 1] > lo))
        if inside.size:
            first[i], last[i] = inside[0], inside[-1]
        else:
            later = numpy.flatnonzero(real & (offsets[:, 0] >= lo))
            first[i] = last[i] = later[0] if later.size else last_real
    return ids, types, first, last


def _with_markers(ids: numpy.ndarray, types: numpy.ndarray, first: numpy.ndarray, last: numpy.ndarray,
                  rows: numpy.ndarray, pairs: List[int], start: int, n_types: int) -> MarkedSequence:
    n_text = len(ids)
    marker_ids, positions = [], []
    for k in pairs:
        hs, he, ts, te, ht, tt = (int(v) for v in rows[k])
        positions += [first[hs - start], last[he - 1 - start], first[ts - start], last[te - 1 - start]]
        marker_ids += [marker_id(0, ht, n_types), marker_id(1, ht, n_types), marker_id(2, tt, n_types),
                       marker_id(3, tt, n_types)]
    n_markers = len(marker_ids)
    return MarkedSequence(
        ids=numpy.concatenate([ids, numpy.zeros(n_markers, dtype="int64")]),
        marker_ids=numpy.concatenate([numpy.full(n_text, -1, dtype="int64"), numpy.asarray(marker_ids, "int64")]),
        positions=numpy.concatenate([numpy.arange(n_text, dtype="int64"), numpy.asarray(positions, "int64")]),
        types=numpy.concatenate([types, numpy.zeros(n_markers, dtype="int64")]),
        n_text=n_text, pairs=list(pairs))


def padded_batch(sequences: List[MarkedSequence]) -> Dict[str, numpy.ndarray]:
    """One encoder call's arrays: the sequences right-padded, the attention mask (text slots attend to the text, a
    pair's markers to the text and to each other; padding to the text, so that it attends somewhere), and each
    pair's sequence and start-marker slots."""
    width = max(len(s.ids) for s in sequences)
    n = len(sequences)
    batch = {"input_ids": numpy.zeros((n, width), "int64"), "marker_ids": numpy.full((n, width), -1, "int64"),
             "position_ids": numpy.zeros((n, width), "int64"), "token_type_ids": numpy.zeros((n, width), "int64"),
             "attention_mask": numpy.zeros((n, width, width), bool)}
    pair_rows, pair_columns = [], []
    for r, s in enumerate(sequences):
        length = len(s.ids)
        batch["input_ids"][r, :length], batch["marker_ids"][r, :length] = s.ids, s.marker_ids
        batch["position_ids"][r, :length], batch["token_type_ids"][r, :length] = s.positions, s.types
        batch["attention_mask"][r, :, : s.n_text] = True
        for p in range(len(s.pairs)):
            block = slice(s.n_text + MARKER_KINDS * p, s.n_text + MARKER_KINDS * (p + 1))
            batch["attention_mask"][r, block, block] = True
            pair_rows.append(r)
            pair_columns.append((block.start, block.start + 2))  # <S:type> and <O:type>
    batch["pair_rows"] = numpy.asarray(pair_rows, "int64")
    batch["pair_columns"] = numpy.asarray(pair_columns, "int64").reshape((-1, 2))
    return batch

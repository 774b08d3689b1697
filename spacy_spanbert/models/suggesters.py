"""Candidate spans for the span-boundary components, following spaCy's `Suggester` protocol."""
from dataclasses import dataclass
from typing import Iterable, List, Optional

import numpy
from spacy.attrs import IS_SPACE, SENT_START
from spacy.pipeline.spancat import Suggester
from spacy.tokens import Doc
from thinc.api import Ops, get_current_ops
from thinc.types import Ragged

DEFAULT_MAX_WIDTH = 10  # the longest candidate span, in tokens, unless a config says otherwise
# what str.splitlines breaks on: "\n", "\r", vertical tab, form feed, file/group/record separators, NEL, LS, PS
LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def sentence_ngram_suggester(
    docs: Iterable[Doc], *, max_width: int, within_lines: bool = False, ops: Optional[Ops] = None
) -> Ragged:
    """Suggest every span of 1..max_width tokens that stays inside one sentence (and, with `within_lines`, one line).

    When a doc has no sentence boundaries the whole doc is one segment (spans may then cross sentences; they are
    simply negatives to the scorer). With `within_lines`, a whitespace token holding a line break also ends a
    segment: headlines, bylines and list items keep their entities to themselves without a sentence splitter.
    Spans that start or end on a whitespace token are never entities, so they are skipped. The output is spaCy's
    suggester format: a Ragged of (start, end) rows, `end` exclusive, one group per doc, sorted by start then end.
    """
    if ops is None:
        ops = get_current_ops()
    rows: List[numpy.ndarray] = []
    lengths: List[int] = []
    for doc in docs:
        n = len(doc)
        if n == 0:
            lengths.append(0)
            continue
        attrs = doc.to_array([SENT_START, IS_SPACE]).reshape((n, 2))
        starts_segment = attrs[:, 0] == 1
        boundary_ok = attrs[:, 1] == 0
        if within_lines:
            # the token after a line break starts a segment; the break itself, whitespace, is never a span's edge
            for i in numpy.flatnonzero(~boundary_ok[:-1]):
                if not LINE_BREAKS.isdisjoint(doc[int(i)].text):
                    starts_segment[i + 1] = True
        segment = numpy.cumsum(starts_segment)
        doc_rows = []
        for width in range(1, min(max_width, n) + 1):
            starts = numpy.arange(n - width + 1)
            last = starts + width - 1
            keep = (segment[starts] == segment[last]) & boundary_ok[starts] & boundary_ok[last]
            starts = starts[keep]
            doc_rows.append(numpy.stack([starts, starts + width], axis=1))
        spans = numpy.concatenate(doc_rows, axis=0) if doc_rows else numpy.zeros((0, 2), dtype="i")
        spans = spans[numpy.lexsort((spans[:, 1], spans[:, 0]))]
        rows.append(spans)
        lengths.append(spans.shape[0])
    data = numpy.concatenate(rows, axis=0).astype("i") if rows else numpy.zeros((0, 2), dtype="i")
    return Ragged(ops.asarray2i(data), ops.asarray1i(lengths))


@dataclass(frozen=True)
class SentenceNgramSuggester:
    """A spaCy `Suggester` that declares its longest span (`max_width`), so the span model can size its width
    embedding from it; a plain picklable object, so pipelines pickle for multiprocessing's spawn start method."""

    max_width: int
    within_lines: bool = False

    def __call__(self, docs: Iterable[Doc], *, ops: Optional[Ops] = None) -> Ragged:
        return sentence_ngram_suggester(docs, max_width=self.max_width, within_lines=self.within_lines, ops=ops)


def build_sentence_ngram_suggester(max_width: int = DEFAULT_MAX_WIDTH, within_lines: bool = True) -> Suggester:
    """`sentence_ngram_suggester.v2`: all spans up to `max_width` tokens inside a sentence (or the doc when sentences
    are not set), and by default no span crosses a line break.

    Why: CoNLL-2003 gives one sentence per line, and raw news, web and list text breaks lines between headlines,
    bylines and items; given those boundaries, spanbert_ner gains about 0.2 F on CoNLL-2003 test (README Results).
    Hard-wrapped text, where a name can run over a line break, wants `within_lines = false`.

    max_width (int): The longest candidate span in tokens. Longer gold spans can never be predicted.
    within_lines (bool): Also end a segment after every whitespace token holding a line break (any of
        `LINE_BREAKS`, the characters str.splitlines breaks on).
    RETURNS (Suggester): `(docs, *, ops=None) -> Ragged`, as spaCy's spancat expects, with a `max_width` attribute.
    """
    if max_width < 1:
        raise ValueError(f"max_width must be >= 1, got {max_width}: set [components.*.suggester] max_width")
    return SentenceNgramSuggester(max_width, bool(within_lines))

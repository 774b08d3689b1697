"""Span masking for SpanBERT pretraining (Joshi et al., TACL 2020, section 3.1), in pure numpy.

All randomness comes from a `numpy.random.Generator` the caller passes in, so a block masked with the same
generator state is masked the same way (this is what makes `--resume` exact). Words are runs of equal values in
`word_ids` (the fast tokenizer's word index, made block-global by the data reader), so the same code serves
WordPiece and BPE vocabularies. Positions whose word id is negative are special tokens or padding: never masked.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

SCHEMES = ("span", "subword", "whole_word", "named_entity", "noun_phrase")
IGNORE_INDEX = -100


@dataclass(frozen=True)
class MaskingConfig:
    """Every number of the masking recipe; the defaults are the paper's."""

    scheme: str = "span"
    mask_ratio: float = 0.15
    geometric_p: float = 0.2
    min_span_words: int = 1
    max_span_words: int = 10
    mask_prob: float = 0.8
    random_prob: float = 0.1
    # named_entity / noun_phrase: probability of drawing the next span from the candidates
    candidate_share: float = 0.5

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"Unknown masking scheme {self.scheme!r}: choose one of {', '.join(SCHEMES)}.")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"masking.mask_ratio must lie in (0, 1), got {self.mask_ratio}.")
        if not 0.0 < self.geometric_p <= 1.0:
            raise ValueError(f"masking.geometric_p must lie in (0, 1], got {self.geometric_p}.")
        if not 1 <= self.min_span_words <= self.max_span_words:
            raise ValueError("masking.min_span_words must be >= 1 and <= masking.max_span_words.")
        if self.mask_prob < 0 or self.random_prob < 0 or self.mask_prob + self.random_prob > 1.0:
            raise ValueError("masking.mask_prob + masking.random_prob must be non-negative and at most 1.")
        if not 0.0 <= self.candidate_share <= 1.0:
            raise ValueError(f"masking.candidate_share must lie in [0, 1], got {self.candidate_share}.")


@dataclass
class SpanMask:
    """The outcome of masking one block.

    spans: merged masked spans as inclusive wordpiece ranges (start, end), sorted, never touching each other.
    modes: per merged span, 0 = [MASK], 1 = random tokens, 2 = unchanged (one draw per span).
    sampled_lengths: span lengths in words as drawn, before budget truncation and merging.
    token_modes: subword scheme only: BERT's one draw per token, by position.
    """

    spans: List[Tuple[int, int]]
    modes: List[int]
    sampled_lengths: List[int] = field(default_factory=list)
    n_words_masked: int = 0
    token_modes: Optional[Dict[int, int]] = None


def span_length_distribution(p: float, min_len: int, max_len: int) -> np.ndarray:
    """Geometric(p) truncated to [min_len, max_len] and renormalised (p=0.2, 1..10: mean 3.797)."""
    lengths = np.arange(min_len, max_len + 1)
    probs = p * (1.0 - p) ** (lengths - min_len)
    return probs / probs.sum()


def word_boundaries(word_ids: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) wordpiece position of every maskable word, in order."""
    ids = np.asarray(word_ids, dtype=np.int64)
    valid = ids >= 0
    prev = np.concatenate(([-2], ids[:-1]))
    prev_valid = np.concatenate(([False], valid[:-1]))
    starts = np.flatnonzero(valid & ~(prev_valid & (prev == ids)))
    nxt = np.concatenate((ids[1:], [-2]))
    next_valid = np.concatenate((valid[1:], [False]))
    ends = np.flatnonzero(valid & ~(next_valid & (nxt == ids))) + 1
    return starts, ends


def _merge(spans: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """Merge overlapping or adjacent inclusive ranges."""
    merged: List[Tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def mask_spans(
    word_ids: Sequence[int],
    rng: np.random.Generator,
    config: MaskingConfig = MaskingConfig(),
    candidates: Optional[Sequence[Tuple[int, int]]] = None,
) -> SpanMask:
    """Choose the spans to mask in one block.

    word_ids (Sequence[int]): per wordpiece, its word index (equal for pieces of one word), -1 for special tokens
        and padding.
    rng (numpy.random.Generator): the only source of randomness.
    config (MaskingConfig): scheme and numbers.
    candidates (Sequence[Tuple[int, int]]): for named_entity / noun_phrase, inclusive wordpiece ranges of entities
        or noun chunks; they are snapped outward to word boundaries.
    RETURNS (SpanMask): the merged spans and one replacement mode per span.
    """
    starts, ends = word_boundaries(word_ids)
    n_words = len(starts)
    n_pieces = int((ends - starts).sum()) if n_words else 0
    if n_words == 0:
        return SpanMask([], [])
    budget = int(np.ceil(config.mask_ratio * n_pieces))
    if config.scheme == "subword":
        positions = np.flatnonzero(np.asarray(word_ids) >= 0)
        chosen = np.sort(rng.choice(positions, size=budget, replace=False))
        # BERT's token masking: one 80/10/10 draw per token, so each token is its own span before merging.
        modes_per_token = _draw_modes(rng, len(chosen), config)
        spans = [(int(p), int(p)) for p in chosen]
        return _finish(spans, modes_per_token, starts, ends, sampled=[1] * len(spans), per_token=True)
    word_masked = np.zeros(n_words, dtype=bool)
    valid = np.asarray(word_ids) >= 0
    piece_to_word = np.where(valid, np.searchsorted(starts, np.arange(len(valid)), side="right") - 1, -1)
    maskable = np.flatnonzero(piece_to_word >= 0)
    lengths = np.arange(config.min_span_words, config.max_span_words + 1)
    probs = span_length_distribution(config.geometric_p, config.min_span_words, config.max_span_words)
    cand_words = _candidate_words(candidates, piece_to_word) if config.scheme in ("named_entity", "noun_phrase") else []
    n_masked = 0
    word_spans: List[Tuple[int, int]] = []
    sampled: List[int] = []
    while n_masked < budget and not word_masked.all():
        if cand_words and rng.random() < config.candidate_share:
            first, last = cand_words.pop(int(rng.integers(len(cand_words))))
            if word_masked[first : last + 1].any():
                continue
            length = last - first + 1
        else:
            # span, and named_entity / noun_phrase otherwise (as the reference's NER scheme does): geometric spans
            # anchored uniformly; whole_word: single words. Deviation: candidates are drawn without replacement
            # (the reference redraws them), so one is never tried twice in a sequence
            length = 1 if config.scheme == "whole_word" else int(rng.choice(lengths, p=probs))
            # anchor uniform over wordpieces, snapped to the start of its word
            first = int(piece_to_word[maskable[int(rng.integers(len(maskable)))]])
            if word_masked[first]:
                continue
        sampled.append(length)
        last = first
        for w in range(first, min(first + length, n_words)):
            # Deviation from the reference, which extends through masked words and cuts the last word at the
            # budget: a span stops at an already-masked word (no merged double counting) and masks whole words
            # only, so the last word may overshoot the budget by its remaining pieces
            if word_masked[w] or n_masked >= budget or (w > first and starts[w] != ends[w - 1]):
                break  # stop at the budget, at masked words and at special tokens
            word_masked[w] = True
            n_masked += int(ends[w] - starts[w])
            last = w
        word_spans.append((first, last))
    spans = [(int(starts[a]), int(ends[b] - 1)) for a, b in word_spans]
    return _finish(spans, None, starts, ends, sampled=sampled, per_token=False, rng=rng, config=config)


def _candidate_words(candidates, piece_to_word: np.ndarray) -> List[Tuple[int, int]]:
    """Map wordpiece candidate ranges to word ranges, dropping ranges that cover only special tokens."""
    out = []
    for start, end in candidates or ():
        words = piece_to_word[max(start, 0) : end + 1]
        words = words[words >= 0]
        if len(words):
            out.append((int(words.min()), int(words.max())))
    return out


def _draw_modes(rng: np.random.Generator, n: int, config: MaskingConfig) -> np.ndarray:
    u = rng.random(n)
    return np.where(u < config.mask_prob, 0, np.where(u < config.mask_prob + config.random_prob, 1, 2))


def _finish(spans, token_modes, starts, ends, *, sampled, per_token, rng=None, config=None) -> SpanMask:
    merged = _merge(spans)
    if per_token:
        # keep the per-token draws; a merged run reports its first token's mode
        mode_of = {s: int(m) for (s, _), m in zip(spans, token_modes)}
        result = SpanMask(merged, [mode_of[s] for s, _ in merged], sampled, token_modes=mode_of)
    else:
        modes = [int(m) for m in _draw_modes(rng, len(merged), config)]
        result = SpanMask(merged, modes, sampled)
    covered = np.zeros(int(ends[-1]) if len(ends) else 0, dtype=bool)
    for s, e in merged:
        covered[s : e + 1] = True
    result.n_words_masked = int(covered[starts].sum())
    return result


@dataclass(frozen=True)
class ReplacementTokens:
    """The tokens a random replacement draws from: uniformly, or by corpus frequency when `cdf` is set.

    The reference draws replacements from the corpus token stream, i.e. by frequency: frequent words appear as
    replacements as often as in text, and tokens that never occur in the corpus are never drawn.
    """

    ids: np.ndarray
    cdf: Optional[np.ndarray] = None

    @classmethod
    def from_counts(cls, ids: np.ndarray, counts: np.ndarray) -> "ReplacementTokens":
        """Frequency-weighted draws over `ids` (counts indexed by token id); uniform if none of them occurs."""
        ids = np.asarray(ids, dtype=np.int64)
        counts = np.asarray(counts, dtype=np.float64)
        weights = np.where(ids < len(counts), counts[np.minimum(ids, len(counts) - 1)], 0.0)
        keep = weights > 0
        if not keep.any():
            return cls(ids)
        cdf = np.cumsum(weights[keep])
        return cls(ids[keep], cdf / cdf[-1])

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.cdf is None:
            return self.ids[rng.integers(len(self.ids), size=n)]
        return self.ids[np.minimum(np.searchsorted(self.cdf, rng.random(n), side="right"), len(self.ids) - 1)]


def apply_mask(
    input_ids: np.ndarray,
    span_mask: SpanMask,
    rng: np.random.Generator,
    mask_token_id: int,
    random_token_ids: Union[np.ndarray, ReplacementTokens],
) -> Tuple[np.ndarray, np.ndarray]:
    """Replace the chosen spans: [MASK], random tokens (uniform over an id array, or drawn by a
    `ReplacementTokens`), or left unchanged.

    RETURNS (Tuple[ndarray, ndarray]): the corrupted ids and the labels (original id at masked positions,
        -100 elsewhere).
    """
    tokens = random_token_ids if isinstance(random_token_ids, ReplacementTokens) else ReplacementTokens(
        np.asarray(random_token_ids, dtype=np.int64))
    ids = np.array(input_ids, dtype=np.int64, copy=True)
    labels = np.full_like(ids, IGNORE_INDEX)
    token_modes = span_mask.token_modes
    for (start, end), mode in zip(span_mask.spans, span_mask.modes):
        labels[start : end + 1] = ids[start : end + 1]
        if token_modes is not None:
            for pos in range(start, end + 1):
                if token_modes[pos] == 0:
                    ids[pos] = mask_token_id
                elif token_modes[pos] == 1:
                    ids[pos] = tokens.draw(rng, 1)[0]
        elif mode == 0:
            ids[start : end + 1] = mask_token_id
        elif mode == 1:
            ids[start : end + 1] = tokens.draw(rng, end - start + 1)
    return ids, labels

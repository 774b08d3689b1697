"""Batch packed blocks, mask them, and lay out the MLM and SBO targets for `SpanBertForPretraining`.

Each block is masked with its own generator seeded from (seed, epoch, block index): masks are fresh every epoch,
identical for a block however batches are formed or split across processes, and an interrupted run resumes with
the very masks it would have drawn.
"""
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from .masking import IGNORE_INDEX, MaskingConfig, ReplacementTokens, apply_mask, mask_spans

# placeholder vocabulary entries (BERT's [unused0..993], <unusedN> of other vocabularies): never real text
UNUSED_TOKEN = re.compile(r"^(\[unused\d+\]|<unused\d+>)$")


def replacement_candidates(tokenizer) -> np.ndarray:
    """Token ids a random replacement may use: the vocabulary less special tokens and [unused*] placeholders."""
    special = set(tokenizer.all_special_ids)
    return np.array(sorted(i for t, i in tokenizer.get_vocab().items()
                           if i not in special and not UNUSED_TOKEN.match(t)), dtype=np.int64)


def corpus_token_counts(token_ids: np.ndarray, vocab_size: int, chunk: int = 1 << 24) -> np.ndarray:
    """How often each token id occurs in a (memory-mapped) token stream, read in chunks to bound memory."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, len(token_ids), chunk):
        part = np.asarray(token_ids[start : start + chunk], dtype=np.int64)
        counts += np.bincount(part[(part >= 0) & (part < vocab_size)], minlength=vocab_size)
    return counts


def sbo_targets(word_ids: np.ndarray, spans, max_targets: int):
    """SBO targets of one block: (left boundary, right boundary, offset in span, position) per target.

    A span gets targets only when both external boundaries s-1 and e+1 are ordinary tokens of the block (not
    [CLS], [SEP] or padding): a span touching the block edge has no boundary to predict from.
    """
    out = []
    n = len(word_ids)
    for s, e in spans:
        if s - 1 < 0 or e + 1 >= n or word_ids[s - 1] < 0 or word_ids[e + 1] < 0:
            continue
        for i in range(s, min(e, s + max_targets - 1) + 1):
            out.append((s - 1, e + 1, i - s, i))
    return out


@dataclass
class SpanMaskingCollator:
    """Turn dataset items {"index", "input_ids", "word_ids", "candidates"} into a model batch.

    RETURNS (dict of torch tensors): input_ids, attention_mask, labels (original id at masked positions, -100
        elsewhere), sbo_batch / sbo_left / sbo_right / sbo_offset / sbo_labels (one entry per SBO target) and
        mask_stats ([n_pieces, n_masked, n_spans, n_masked_words]) for the log.
    """

    pad_token_id: int
    mask_token_id: int
    random_token_ids: np.ndarray
    # corpus count per token id: random replacements then follow corpus frequency (the reference's)
    token_counts: Optional[np.ndarray] = None
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    max_sbo_targets: int = 15
    seed: int = 0
    epoch: int = 0
    pad_to_multiple_of: Optional[int] = 8

    def __post_init__(self) -> None:
        self.use_token_counts(self.token_counts)

    def use_token_counts(self, counts: Optional[np.ndarray]) -> None:
        """Draw random replacements by these corpus counts (None: uniformly over `random_token_ids`)."""
        self.token_counts = counts
        ids = np.asarray(self.random_token_ids, dtype=np.int64)
        self.replacement = ReplacementTokens(ids) if counts is None else ReplacementTokens.from_counts(ids, counts)

    @classmethod
    def from_tokenizer(cls, tokenizer, **kwargs) -> "SpanMaskingCollator":
        """Build from a HF tokenizer; random replacements never draw special or [unused*] tokens."""
        if tokenizer.mask_token_id is None:
            raise ValueError("The tokenizer has no mask token: pick a checkpoint whose tokenizer defines [MASK].")
        return cls(tokenizer.pad_token_id, tokenizer.mask_token_id, replacement_candidates(tokenizer), **kwargs)

    def __call__(self, items: Sequence[Dict]) -> Dict:
        import torch

        length = max(len(it["input_ids"]) for it in items)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        n = len(items)
        ids = np.full((n, length), self.pad_token_id, dtype=np.int64)
        labels = np.full((n, length), IGNORE_INDEX, dtype=np.int64)
        attention = np.zeros((n, length), dtype=np.int64)
        sbo: List[tuple] = []
        stats = np.zeros(4, dtype=np.int64)
        for row, item in enumerate(items):
            rng = np.random.default_rng([self.seed, self.epoch, int(item["index"])])
            word_ids = np.asarray(item["word_ids"])
            cands = item.get("candidates")
            span_mask = mask_spans(word_ids, rng, self.masking, None if cands is None else [tuple(c) for c in cands])
            corrupted, lab = apply_mask(item["input_ids"], span_mask, rng, self.mask_token_id, self.replacement)
            k = len(corrupted)
            ids[row, :k], labels[row, :k], attention[row, :k] = corrupted, lab, 1
            orig = np.asarray(item["input_ids"])
            sbo.extend((row, l, r, o, int(orig[i])) for l, r, o, i in sbo_targets(word_ids, span_mask.spans,
                                                                                self.max_sbo_targets))
            stats += [int((word_ids >= 0).sum()), int((lab != IGNORE_INDEX).sum()), len(span_mask.spans),
                      span_mask.n_words_masked]
        sbo_arr = np.asarray(sbo, dtype=np.int64).reshape(-1, 5)
        batch = {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(attention),
            "labels": torch.from_numpy(labels),
            "sbo_batch": torch.from_numpy(sbo_arr[:, 0].copy()),
            "sbo_left": torch.from_numpy(sbo_arr[:, 1].copy()),
            "sbo_right": torch.from_numpy(sbo_arr[:, 2].copy()),
            "sbo_offset": torch.from_numpy(sbo_arr[:, 3].copy()),
            "sbo_labels": torch.from_numpy(sbo_arr[:, 4].copy()),
            "mask_stats": torch.from_numpy(stats),
        }
        return batch

"""Capitalisation as token types: an uncased encoder (MiniLM, bert-base-uncased) that sees case in every layer.

An uncased tokenizer lower-cases the text before the encoder sees it, so "Bush" and "bush" reach it as the same
wordpiece: the strongest cue for named entities is gone before the first layer. Here each wordpiece's token type
says how its whitespace-delimited word is capitalised (none, title, upper, mixed): BERT adds the token-type embedding
to every input vector, so case reaches all layers and every token's context.

The three case rows are appended to the checkpoint's token-type table (BERT's 2: segments A and B, which stay as
they were) and start as copies of row 0, the type every single-segment input has: before fine-tuning the encoder
computes exactly what it did without case types; fine-tuning then learns what capitalisation adds. The encoder's
config records the first case row under `CONFIG_KEY`, so a saved pipeline is rebuilt with the larger table. The
transformer's forward computes the ids from the tokenizer's character offsets (`case_type_ids`) and passes them as
the encoder's `token_type_ids`: the tokenizer itself is never changed.
"""
import re
from functools import lru_cache
from typing import Any, Sequence

import numpy

CASE_NONE, CASE_TITLE, CASE_UPPER, CASE_MIXED = 0, 1, 2, 3
N_CASE_ROWS = 3  # title, upper and mixed get new rows; CASE_NONE keeps token type 0
CONFIG_KEY = "spacy_spanbert_case_type_offset"
_WORD = re.compile(r"\S+")


@lru_cache(maxsize=1 << 16)  # words repeat: the cache makes typing a window's words 2.4x faster
def word_case(word: str) -> int:
    """How a word is capitalised, from its cased characters only (digits and punctuation have no case).

    "Chicago", "A" -> CASE_TITLE; "USA", "U.S." -> CASE_UPPER; "McDonald", "O'Neill", "iPhone" -> CASE_MIXED;
    "said", "1996", "--" -> CASE_NONE."""
    cased = [c for c in word if c.isupper() or c.islower()]
    if not any(c.isupper() for c in cased):
        return CASE_NONE
    if all(c.isupper() for c in cased):
        return CASE_UPPER if len(cased) > 1 else CASE_TITLE
    if cased[0].isupper() and not any(c.isupper() for c in cased[1:]):
        return CASE_TITLE
    return CASE_MIXED


def char_cases(text: str) -> numpy.ndarray:
    """The case of the whitespace-delimited word each character belongs to (CASE_NONE for whitespace).

    Words, not wordpieces: "Chicago" becomes "chi ##cago" and both pieces are title case, and "U.S." (split on
    its dots by BERT's pre-tokenizer) stays upper case."""
    cases = numpy.zeros(len(text) + 1, dtype="int64")  # one spare slot for an offset at the very end
    for match in _WORD.finditer(text):
        case = word_case(match.group())
        if case != CASE_NONE:
            cases[match.start():match.end()] = case
    return cases


def case_type_ids(texts: Sequence[str], offsets: numpy.ndarray, offset: int) -> numpy.ndarray:
    """Token type ids for a padded batch: 0 for uncased words, special tokens and padding; `offset + case - 1` else.

    texts: the batch's strings. offsets (numpy.ndarray): the tokenizer's `offset_mapping`, *Shape:* (batch, seq, 2),
    character offsets into each text ((0, 0) for special tokens and padding). offset (int): the first case row."""
    types = numpy.zeros(offsets.shape[:2], dtype="int64")
    for row, text in enumerate(texts):
        starts, ends = offsets[row, :, 0], offsets[row, :, 1]
        cases = char_cases(text)[numpy.minimum(starts, len(text))]
        cases[ends <= starts] = CASE_NONE  # special tokens and padding cover no characters
        types[row] = numpy.where(cases > 0, offset + cases - 1, 0)
    return types


def add_case_type_rows(encoder: Any) -> int:
    """Append the case rows to a Hugging Face encoder's token-type table (once) and return the first one's id.

    Raises ValueError for encoders without a token-type table (e.g. DistilBERT), before any training."""
    import torch

    config = encoder.config
    offset = getattr(config, CONFIG_KEY, None)
    if offset is not None:
        return int(offset)
    embeddings = getattr(getattr(encoder, "embeddings", None), "token_type_embeddings", None)
    if not isinstance(embeddings, torch.nn.Embedding):
        raise ValueError(f"case_types needs an encoder with token-type embeddings (BERT, MiniLM, ELECTRA, RoBERTa); "
                         f"{type(encoder).__name__} has none: set case_types = false, or use a cased encoder")
    old = embeddings.weight.detach()
    offset = int(old.shape[0])
    table = torch.nn.Embedding(offset + N_CASE_ROWS, old.shape[1], device=old.device, dtype=old.dtype)
    with torch.no_grad():
        table.weight[:offset] = old
        table.weight[offset:] = old[0]
    encoder.embeddings.token_type_embeddings = table
    config.type_vocab_size = offset + N_CASE_ROWS
    setattr(config, CONFIG_KEY, offset)
    return offset

"""A tiny random BERT with an English word vocabulary: the one stand-in encoder of the tests and the --quick runs.

Why: no small BERT exists offline, and a smoke test needs a real Hugging Face checkpoint directory (config.json,
model.safetensors and a fast tokenizer) that builds in a second. The vocabulary holds ordinary English words
(whole words, so tokens map to few wordpieces), a few suffixes (so some words span several), and single letters
as the fallback for anything else. The tests' synthetic corpus draws its sentences from the same word lists.
"""
from pathlib import Path
from typing import List, Optional, Sequence

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCT = list(".,;:!?'\"()-")
DETERMINERS = "the a an this that every some no".split()
ADJECTIVES = "big small old new red green happy quiet dark bright cold warm early late young strong".split()
NOUNS = (
    "cat dog man woman child city house river tree car ship bank market company president government "
    "team game year day night morning book letter street school teacher student doctor king queen bird "
    "mountain village country road window door table garden farmer soldier reporter minister"
).split()
VERBS = (
    "saw found liked took gave made met visited watched helped called followed bought sold built opened "
    "closed left reached told"
).split()
NAMES = "john mary london paris berlin reuters google smith anna peter".split()
FUNCTION = (
    "and or but of to in on at by for with from into over under after before because when while he she it "
    "they we you i is was were be been has have had not very also then there here who which what near quickly slowly"
).split()
SUFFIXES = ["##s", "##ed", "##ing", "##ly", "##er", "##est", "##ness"]
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]


def tiny_vocab() -> List[str]:
    """A lower-cased WordPiece vocabulary of ordinary English words, with letters as a fallback (no duplicates)."""
    words = DETERMINERS + ADJECTIVES + NOUNS + VERBS + NAMES + FUNCTION
    seen, vocab = set(), []
    for tok in SPECIAL_TOKENS + PUNCT + words + SUFFIXES + LETTERS + ["##" + c for c in LETTERS]:
        if tok not in seen:
            seen.add(tok)
            vocab.append(tok)
    return vocab


def build_tiny_bert(path: Path, max_positions: int = 128, seed: int = 0, hidden_size: int = 32,
                    vocab: Optional[Sequence[str]] = None) -> Path:
    """Save a seeded random BertModel (2 layers, 2 heads, feed-forward twice `hidden_size`) and a lower-casing
    BertTokenizerFast to `path`. RETURNS (Path): `path`, loadable with `AutoModel` / `AutoTokenizer`.

    vocab (Sequence[str]): wordpieces, the special tokens first (default: `tiny_vocab()`).
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(vocab or tiny_vocab()) + "\n", encoding="utf8")
    tokenizer = BertTokenizerFast(
        vocab_file=str(path / "vocab.txt"), do_lower_case=True, model_max_length=max_positions
    )
    tokenizer.save_pretrained(str(path))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=max_positions,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(path), safe_serialization=True)
    return path

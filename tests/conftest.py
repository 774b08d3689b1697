"""Shared fixtures: a tiny random BERT with an English word vocabulary, and a tiny English corpus.

Both are built in a temporary directory on first use (no network): `tiny_bert_dir` holds config.json,
model.safetensors and a lower-casing BertTokenizerFast (vocab.txt, tokenizer.json, tokenizer_config.json).
"""
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

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


def tiny_vocab() -> list:
    """A lower-cased WordPiece vocabulary of ordinary English words, with letters as a fallback."""
    words = DETERMINERS + ADJECTIVES + NOUNS + VERBS + NAMES + FUNCTION
    seen, vocab = set(), []
    for tok in SPECIAL_TOKENS + PUNCT + words + SUFFIXES + LETTERS + ["##" + c for c in LETTERS]:
        if tok not in seen:
            seen.add(tok)
            vocab.append(tok)
    return vocab


def make_sentence(rng: random.Random) -> str:
    """A grammatical-looking sentence; some words take suffixes so words span several wordpieces."""
    def np_():
        noun = rng.choice(NOUNS) + ("s" if rng.random() < 0.2 else "")
        if rng.random() < 0.3:
            return rng.choice(NAMES).capitalize()
        return f"{rng.choice(DETERMINERS)} {rng.choice(ADJECTIVES)} {noun}"

    parts = [np_().capitalize() if not np_().istitle() else np_(), rng.choice(VERBS), np_()]
    if rng.random() < 0.5:
        parts += [rng.choice(["in", "at", "with", "after", "near"]), np_()]
    if rng.random() < 0.2:
        parts += [",", "and", "quickly" if rng.random() < 0.5 else "slowly", rng.choice(VERBS), np_()]
    return " ".join(parts).replace(" ,", ",") + "."


def write_corpus(path: Path, n_docs: int, seed: int = 0, sents_per_doc=(3, 9)) -> Path:
    """A .txt corpus: one sentence per line, a blank line between documents."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        docs.append("\n".join(make_sentence(rng) for _ in range(rng.randint(*sents_per_doc))))
    path.write_text("\n\n".join(docs) + "\n", encoding="utf8")
    return path


def build_tiny_bert(path: Path, max_positions: int = 128, seed: int = 0) -> Path:
    """Save a random BertModel (hidden 32, 2 layers, 2 heads) with a lower-casing fast tokenizer."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(tiny_vocab()) + "\n", encoding="utf8")
    tokenizer = BertTokenizerFast(
        vocab_file=str(path / "vocab.txt"), do_lower_case=True, model_max_length=max_positions
    )
    tokenizer.save_pretrained(str(path))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(path), safe_serialization=True)
    return path


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """Path to a saved tiny random BertModel + BertTokenizerFast (lower-cased English vocab, 128 positions)."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert") / "model")


@pytest.fixture(scope="session")
def tiny_text_corpus(tmp_path_factory) -> Path:
    """Path to a small English .txt corpus (sentence per line, blank line between 40 documents)."""
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt", n_docs=40)


@pytest.fixture(scope="session")
def corpus_writer():
    """The corpus generator: `corpus_writer(path, n_docs, seed=0, sents_per_doc=(3, 9))` writes a .txt corpus."""
    return write_corpus

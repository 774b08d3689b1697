"""Span masking statistics and invariants (paper section 3.1, reference masking.py)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_spanbert.pretraining.masking import (
    MaskingConfig,
    apply_mask,
    mask_spans,
    span_length_distribution,
    word_boundaries,
)

MASK_ID = 4
RANDOM_IDS = np.arange(10, 400)


def synthetic_block(rng: np.random.Generator, n_pieces: int = 126) -> np.ndarray:
    """word_ids of `[CLS] words [SEP]`: words of 1-3 wordpieces, -1 at special positions."""
    sizes = rng.choice([1, 2, 3], size=n_pieces, p=[0.75, 0.2, 0.05])
    ids = np.repeat(np.arange(n_pieces), sizes)[:n_pieces]
    return np.concatenate(([-1], ids, [-1]))


@pytest.fixture(scope="module")
def corpus_masks():
    """Mask 600 blocks (> 50k words) with the default span scheme."""
    data_rng = np.random.default_rng(123)
    blocks = [synthetic_block(data_rng) for _ in range(600)]
    rng = np.random.default_rng(7)
    return blocks, [mask_spans(b, rng) for b in blocks]


def test_length_distribution_mean():
    probs = span_length_distribution(0.2, 1, 10)
    assert probs.sum() == pytest.approx(1.0)
    assert (np.arange(1, 11) * probs).sum() == pytest.approx(3.797, abs=1e-3)


def test_statistics_over_50k_words(corpus_masks):
    blocks, masks = corpus_masks
    n_words = sum(len(word_boundaries(b)[0]) for b in blocks)
    assert n_words >= 50_000
    n_pieces = sum(int((b >= 0).sum()) for b in blocks)
    n_masked = sum(e - s + 1 for m in masks for s, e in m.spans)
    assert n_masked / n_pieces == pytest.approx(0.15, abs=0.01)
    sampled = np.concatenate([m.sampled_lengths for m in masks])
    assert sampled.mean() == pytest.approx(3.8, abs=0.15)
    assert sampled.max() <= 10 and sampled.min() >= 1


def test_spans_on_word_boundaries_and_never_special(corpus_masks):
    blocks, masks = corpus_masks
    for block, m in zip(blocks, masks):
        starts, ends = word_boundaries(block)
        start_set, end_set = set(starts.tolist()), set((ends - 1).tolist())
        for (s, e), (s2, _) in zip(m.spans, m.spans[1:] + [(10**9, None)]):
            assert s in start_set and e in end_set
            assert (block[s : e + 1] >= 0).all()
            assert e + 1 < s2, "merged spans must not touch"


def test_one_replacement_draw_per_span(corpus_masks):
    blocks, masks = corpus_masks
    modes = np.concatenate([m.modes for m in masks])
    shares = np.bincount(modes, minlength=3) / len(modes)
    assert shares == pytest.approx([0.8, 0.1, 0.1], abs=0.03)
    rng = np.random.default_rng(0)
    for block, m in list(zip(blocks, masks))[:100]:
        ids = np.where(block >= 0, 1000 + np.arange(len(block)), 2)
        corrupted, labels = apply_mask(ids, m, rng, MASK_ID, RANDOM_IDS)
        for (s, e), mode in zip(m.spans, m.modes):
            piece = corrupted[s : e + 1]
            assert (labels[s : e + 1] == ids[s : e + 1]).all()
            if mode == 0:
                assert (piece == MASK_ID).all()
            elif mode == 1:
                assert np.isin(piece, RANDOM_IDS).all()
            else:
                assert (piece == ids[s : e + 1]).all()
        outside = labels == -100
        assert (corrupted[outside] == ids[outside]).all()


def test_same_seed_same_masks_other_seed_other_masks():
    block = synthetic_block(np.random.default_rng(1), 400)
    a = mask_spans(block, np.random.default_rng(5))
    b = mask_spans(block, np.random.default_rng(5))
    c = mask_spans(block, np.random.default_rng(6))
    assert a.spans == b.spans and a.modes == b.modes
    assert a.spans != c.spans


def test_subword_scheme_masks_exact_budget_per_token():
    block = synthetic_block(np.random.default_rng(2), 200)
    m = mask_spans(block, np.random.default_rng(0), MaskingConfig(scheme="subword"))
    n = sum(e - s + 1 for s, e in m.spans)
    assert n == int(np.ceil(0.15 * (block >= 0).sum()))
    assert m.token_modes is not None and len(m.token_modes) == n


def test_whole_word_scheme_samples_single_words():
    block = synthetic_block(np.random.default_rng(3), 200)
    m = mask_spans(block, np.random.default_rng(0), MaskingConfig(scheme="whole_word"))
    assert set(m.sampled_lengths) == {1}
    starts, ends = word_boundaries(block)
    for s, e in m.spans:
        assert s in set(starts.tolist()) and e + 1 in set(ends.tolist())


def test_named_entity_scheme_uses_candidates():
    data_rng = np.random.default_rng(4)
    hits, total = 0, 0
    for seed in range(50):
        block = synthetic_block(data_rng, 120)
        starts, ends = word_boundaries(block)
        # entities: every 8th word, two words long
        cands = [(int(starts[w]), int(ends[w + 1] - 1)) for w in range(0, len(starts) - 2, 8)]
        m = mask_spans(block, np.random.default_rng(seed), MaskingConfig(scheme="named_entity"), cands)
        spans = m.spans
        total += len(spans)
        hits += sum(any(s <= cs and ce <= e for cs, ce in cands) for s, e in spans)
    # about half of the draws come from entities (merging blurs the exact share)
    assert 0.25 < hits / total < 0.75


def test_bad_config_raises():
    with pytest.raises(ValueError, match="scheme"):
        MaskingConfig(scheme="random")
    with pytest.raises(ValueError, match="mask_ratio"):
        MaskingConfig(mask_ratio=1.5)
    with pytest.raises(ValueError, match="min_span_words"):
        MaskingConfig(min_span_words=5, max_span_words=2)


def test_block_without_words_masks_nothing():
    m = mask_spans(np.array([-1, -1]), np.random.default_rng(0))
    assert m.spans == []


@st.composite
def word_id_blocks(draw):
    sizes = draw(st.lists(st.integers(1, 4), min_size=1, max_size=60))
    ids = np.repeat(np.arange(len(sizes)), sizes)
    # sprinkle special tokens between words
    specials = draw(st.lists(st.integers(0, len(sizes)), max_size=3))
    out = []
    word_start = np.flatnonzero(np.diff(np.concatenate(([-5], ids))) != 0)
    for i, w in enumerate(ids):
        if i in set(word_start) and int(w) in specials:
            out.append(-1)
        out.append(int(w))
    return np.array([-1] + out + [-1])


@settings(max_examples=150, deadline=None)
@given(
    block=word_id_blocks(),
    seed=st.integers(0, 2**32 - 1),
    scheme=st.sampled_from(["span", "subword", "whole_word"]),
)
def test_invariants(block, seed, scheme):
    m = mask_spans(block, np.random.default_rng(seed), MaskingConfig(scheme=scheme))
    n_valid = int((block >= 0).sum())
    budget = int(np.ceil(0.15 * n_valid))
    n_masked = sum(e - s + 1 for s, e in m.spans)
    starts, ends = word_boundaries(block)
    max_word = int((ends - starts).max())
    assert budget <= n_masked <= budget + max_word - 1
    for s, e in m.spans:
        assert 0 <= s <= e < len(block)
        assert (block[s : e + 1] >= 0).all()
        if scheme != "subword":
            assert s in set(starts.tolist()) and e + 1 in set(ends.tolist())
    assert all(a[1] + 1 < b[0] for a, b in zip(m.spans, m.spans[1:]))
    assert len(m.modes) == len(m.spans)


@pytest.mark.parametrize("scheme", ["named_entity", "noun_phrase"])
def test_draws_outside_candidates_are_geometric_spans(scheme):
    # the reference's NER scheme draws geometric spans outside the entities, not single words
    data_rng = np.random.default_rng(8)
    lengths = []
    for seed in range(200):
        block = synthetic_block(data_rng, 126)
        lengths += mask_spans(block, np.random.default_rng(seed), MaskingConfig(scheme=scheme), []).sampled_lengths
    assert np.mean(lengths) == pytest.approx(3.8, abs=0.2)
    assert max(lengths) == 10


def test_random_replacement_follows_corpus_frequency():
    from spacy_spanbert.pretraining.masking import ReplacementTokens

    counts = np.zeros(400, dtype=np.int64)
    counts[[20, 21, 22]] = [900, 90, 10]  # a skewed corpus: three words, nothing else ever occurs
    tokens = ReplacementTokens.from_counts(RANDOM_IDS, counts)
    draws = tokens.draw(np.random.default_rng(0), 20_000)
    assert set(np.unique(draws).tolist()) == {20, 21, 22}
    assert np.bincount(draws, minlength=23)[20:23] / len(draws) == pytest.approx([0.9, 0.09, 0.01], abs=0.01)
    uniform = ReplacementTokens.from_counts(RANDOM_IDS, np.zeros(400, dtype=np.int64))  # no counts: uniform
    assert len(np.unique(uniform.draw(np.random.default_rng(0), 20_000))) == len(RANDOM_IDS)


def test_collator_replaces_by_corpus_frequency_never_unused_or_special(tmp_path):
    from transformers import BertTokenizerFast

    from spacy_spanbert.pretraining.collator import SpanMaskingCollator, corpus_token_counts

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"[unused{i}]" for i in range(20)] + [
        "the", "cat", "sat", "on", "mat", "rare", "never"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    col = SpanMaskingCollator.from_tokenizer(tok, masking=MaskingConfig(mask_prob=0.0, random_prob=1.0))
    allowed = set(col.random_token_ids.tolist())
    assert allowed == {tok.convert_tokens_to_ids(t) for t in ["the", "cat", "sat", "on", "mat", "rare", "never"]}
    words = ["the"] * 80 + ["cat", "sat", "on", "mat"] * 4 + ["rare"] * 4  # skewed; "never" never occurs
    stream = np.array(tok.convert_tokens_to_ids(words) + [tok.cls_token_id] * 50)
    col.use_token_counts(corpus_token_counts(stream, len(vocab)))
    items = [{"index": i, "input_ids": np.array([2] + tok.convert_tokens_to_ids(["cat"] * 40) + [3]),
              "word_ids": np.array([-1] + list(range(40)) + [-1])} for i in range(60)]
    batch = col(items)
    replaced = batch["input_ids"][batch["labels"] != -100].numpy()
    changed = replaced[replaced != tok.convert_tokens_to_ids("cat")]
    names = tok.convert_ids_to_tokens(changed.tolist())
    assert "never" not in names and not any(n.startswith("[") for n in names)
    assert names.count("the") / len(names) > 0.7  # 80 of the 100 corpus words are "the"

"""MLM and SBO heads, SBO targets, the collator's padding and the pretraining model's gradients."""
import numpy as np
import pytest
import torch

from spacy_spanbert.nn.heads import MaskedLMHead, SpanBoundaryHead
from spacy_spanbert.pretraining.collator import SpanMaskingCollator, sbo_targets
from spacy_spanbert.pretraining.masking import MaskingConfig
from spacy_spanbert.pretraining.model import SpanBertForPretraining


def test_head_shapes():
    emb = torch.randn(50, 16)
    mlm = MaskedLMHead(16, 50)
    assert mlm(torch.randn(7, 16), emb).shape == (7, 50)
    sbo = SpanBoundaryHead(16, 50, max_targets=15, position_size=200)
    hidden = torch.randn(2, 10, 16)
    idx = torch.tensor([0, 1, 1])
    out = sbo(hidden, idx, torch.tensor([1, 2, 2]), torch.tensor([5, 6, 6]), torch.tensor([0, 0, 1]), emb)
    assert out.shape == (3, 50)
    assert sbo.position_embeddings.weight.shape == (15, 200)
    with pytest.raises(ValueError, match="max_targets"):
        sbo(hidden, idx[:1], idx[:1], idx[:1], torch.tensor([15]), emb)


def test_sbo_targets_need_inner_boundaries():
    # [CLS] w0 w1 w2 w3 w4 [SEP] [PAD] [PAD]
    word_ids = np.array([-1, 0, 1, 2, 3, 4, -1, -1, -1])
    assert sbo_targets(word_ids, [(1, 2)], 15) == []  # left boundary is [CLS]
    assert sbo_targets(word_ids, [(4, 5)], 15) == []  # right boundary is [SEP]
    assert sbo_targets(word_ids, [(2, 4)], 15) == [(1, 5, 0, 2), (1, 5, 1, 3), (1, 5, 2, 4)]
    long_ids = np.array([-1] + list(range(30)) + [-1])
    assert len(sbo_targets(long_ids, [(2, 25)], 15)) == 15  # only the first 15 tokens of a long span


def _items(n=3, length=20, seed=0):
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        k = length - 2 * i
        ids = np.concatenate(([2], rng.integers(10, 60, k - 2), [3]))
        words = np.concatenate(([-1], np.arange(k - 2), [-1]))
        items.append({"index": i, "input_ids": ids, "word_ids": words, "candidates": np.zeros((0, 2), int)})
    return items


def test_collator_pads_and_never_targets_padding():
    col = SpanMaskingCollator(pad_token_id=0, mask_token_id=4, random_token_ids=np.arange(10, 60), seed=1)
    batch = col(_items())
    lengths = batch["attention_mask"].sum(1)
    assert batch["input_ids"].shape[1] % 8 == 0
    for row, k in enumerate(lengths.tolist()):
        assert (batch["labels"][row, k:] == -100).all()
        assert (batch["input_ids"][row, k:] == 0).all()
        rows = batch["sbo_batch"] == row
        assert (batch["sbo_right"][rows] < k - 1).all() and (batch["sbo_left"][rows] >= 1).all()
    # the same block gets the same masks whatever its batch neighbours
    alone = col([_items()[1]])
    assert torch.equal(alone["labels"][0, : lengths[1]], batch["labels"][1, : lengths[1]])
    col.epoch = 1
    assert not torch.equal(col([_items()[1]])["labels"], alone["labels"])


@pytest.fixture(scope="module")
def tiny_model(tiny_bert_dir):
    return SpanBertForPretraining.from_pretrained(tiny_bert_dir)


def _batch(tiny_bert_dir, pad_to=8):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    enc = tok(["the old man saw the big river near the city .", "a cat found the green door ."])
    items = []
    for i, ids in enumerate(enc["input_ids"]):
        words = [-1 if w is None else w for w in enc.word_ids(i)]
        items.append({"index": i, "input_ids": np.array(ids), "word_ids": np.array(words)})
    col = SpanMaskingCollator.from_tokenizer(tok, masking=MaskingConfig(mask_ratio=0.3), pad_to_multiple_of=pad_to)
    batch = col(items)
    batch.pop("mask_stats")
    return batch


def test_padding_does_not_change_the_loss(tiny_model, tiny_bert_dir):
    tiny_model.eval()
    with torch.no_grad():
        a = tiny_model(**_batch(tiny_bert_dir, pad_to=8))["loss"]
        b = tiny_model(**_batch(tiny_bert_dir, pad_to=32))["loss"]
    assert a.item() == pytest.approx(b.item(), rel=1e-5)


def test_sbo_gradient_reaches_encoder(tiny_model, tiny_bert_dir):
    tiny_model.train()
    batch = _batch(tiny_bert_dir)
    assert len(batch["sbo_labels"]) > 0
    batch["labels"][:] = -100  # no MLM targets: every encoder gradient comes from the SBO
    tiny_model.zero_grad()
    tiny_model(**batch)["loss"].backward()
    layer = tiny_model.encoder.encoder.layer[0].attention.self.query.weight
    assert layer.grad is not None and layer.grad.abs().sum() > 0
    assert tiny_model.sbo_head.position_embeddings.weight.grad.abs().sum() > 0


def test_frozen_encoder_trains_heads_only(tiny_model, tiny_bert_dir):
    tiny_model.zero_grad(set_to_none=True)
    tiny_model.freeze_encoder = True
    try:
        tiny_model(**_batch(tiny_bert_dir))["loss"].backward()
    finally:
        tiny_model.freeze_encoder = False
    assert all(p.grad is None for p in tiny_model.encoder.parameters())
    assert tiny_model.mlm_head.transform.dense.weight.grad.abs().sum() > 0
    assert tiny_model.sbo_head.mlp[0].weight.grad.abs().sum() > 0


def test_sbo_weight_zero_is_plain_span_masking(tiny_bert_dir):
    model = SpanBertForPretraining.from_pretrained(tiny_bert_dir, sbo_weight=0.0)
    out = model(**_batch(tiny_bert_dir))
    assert out["loss"].item() == pytest.approx(out["mlm_loss"].item())


def test_reuses_checkpoint_mlm_head(tiny_bert_dir, tmp_path):
    from transformers import BertForMaskedLM

    mlm = BertForMaskedLM.from_pretrained(str(tiny_bert_dir))
    with torch.no_grad():
        mlm.cls.predictions.transform.dense.weight.fill_(0.5)
    mlm.save_pretrained(str(tmp_path), safe_serialization=True)
    model = SpanBertForPretraining.from_pretrained(tmp_path)
    assert torch.all(model.mlm_head.transform.dense.weight == 0.5)


def test_reuses_roberta_style_lm_head(tmp_path):
    from transformers import RobertaConfig, RobertaForMaskedLM

    config = RobertaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=40)
    mlm = RobertaForMaskedLM(config)
    with torch.no_grad():
        mlm.lm_head.dense.weight.fill_(0.25)
        mlm.lm_head.layer_norm.bias.fill_(0.125)
        mlm.lm_head.bias.fill_(-1.0)
    mlm.save_pretrained(str(tmp_path), safe_serialization=True)
    model = SpanBertForPretraining.from_pretrained(tmp_path)
    assert torch.all(model.mlm_head.transform.dense.weight == 0.25)
    assert torch.all(model.mlm_head.transform.LayerNorm.bias == 0.125)
    assert torch.all(model.mlm_head.bias == -1.0)


def test_heads_start_from_bert_init():
    # the reference initialises both heads as BERT does; PyTorch's defaults (N(0, 1) position embeddings,
    # uniform weights with non-zero biases) start fresh heads far off on a trained encoder
    torch.manual_seed(0)
    mlm, sbo = MaskedLMHead(128, 300), SpanBoundaryHead(128, 300, max_targets=15, position_size=200)
    assert mlm.transform.dense.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert sbo.position_embeddings.weight.std().item() == pytest.approx(0.02, rel=0.05)
    for head in (mlm, sbo):
        for sub in head.modules():
            if isinstance(sub, torch.nn.Linear):
                assert sub.weight.std().item() == pytest.approx(0.02, rel=0.05)
                assert torch.count_nonzero(sub.bias) == 0
            if isinstance(sub, torch.nn.LayerNorm):
                assert torch.all(sub.weight == 1) and torch.count_nonzero(sub.bias) == 0
        assert torch.count_nonzero(head.bias) == 0


def test_model_uses_the_encoders_initializer_range_and_sdpa():
    from transformers import BertConfig

    config = BertConfig(vocab_size=60, hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, initializer_range=0.05)
    model = SpanBertForPretraining.from_config(config)
    assert model.sbo_head.position_embeddings.weight.std().item() == pytest.approx(0.05, rel=0.1)
    assert model.mlm_head.transform.dense.weight.std().item() == pytest.approx(0.05, rel=0.1)
    assert model.encoder.config._attn_implementation == "sdpa"
    assert set(model.head_parameter_names()) == {f"mlm_head.{k}" for k in model.mlm_head.state_dict()} | {
        f"sbo_head.{k}" for k in model.sbo_head.state_dict()}

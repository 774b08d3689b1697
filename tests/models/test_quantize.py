"""int8 SpanBERT: the quantized encoder's safetensors round trip, `spacy spanbert-quantize`, the `quantize` config
setting, packaging, and the one-line errors for bad input."""
import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy
import pytest
import spacy
import srsly

from tests.fixtures.tiny_pipeline import build_tiny_ner_pipeline, transformer_config
from spacy_spanbert.models.quantize import (check_cpu, load_quantized_state, quantize_encoder, quantized_scheme,
                                            quantized_state)
from spacy_spanbert.cli.quantize import ARCHITECTURE, dir_size, quantize_overrides, run_quantize
from spacy_spanbert.models.transformer import encoder_of

TEXTS = ["John saw the big dog in London .", "Mary liked Paris and Berlin with Anna Smith .", "The king ."]
OVERRIDES = {"components.transformer.model.quantize": "int8"}

# Loads a pipeline in a fresh interpreter and prints what the parent compares: entities, span scores, token vectors.
CHILD = textwrap.dedent("""
    import json, sys
    import spacy
    nlp = spacy.load(sys.argv[1])
    out = []
    for doc in nlp.pipe(json.loads(sys.argv[2])):
        out.append({"ents": [[e.start_char, e.end_char, e.label_] for e in doc.ents],
                    "scores": [float(s) for s in doc.spans["spanbert_ents"].attrs["scores"]],
                    "vectors": doc._.trf_data.tensors[0].tolist()})
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_ner_pipeline(tmp_path_factory.mktemp("tiny_ner"), steps=30)


def _child(path: Path):
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), json.dumps(TEXTS)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _encoder(tiny):
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(tiny["bert"])).eval()


@pytest.mark.parametrize("scheme", ["int8", "int8_per_tensor"])
def test_quantized_weights_are_plain_tensors_that_rebuild_the_same_encoder(tiny, scheme):
    import torch

    ids = torch.tensor([[2, 10, 11, 12, 13, 3]])
    fp32 = _encoder(tiny)
    with torch.no_grad():
        expected = fp32(input_ids=ids).last_hidden_state
    int8 = quantize_encoder(_encoder(tiny), scheme)
    assert quantized_scheme(int8) == scheme and quantized_scheme(fp32) is None
    state = quantized_state(int8)
    assert not any(t.is_quantized for t in state.values())
    assert state["encoder.layer.0.attention.self.query.weight_int8"].dtype == torch.int8
    assert "encoder.layer.0.attention.self.query.weight" not in state
    rebuilt = quantize_encoder(_encoder(tiny), scheme)
    with torch.no_grad():  # fresh random values everywhere, so loading must overwrite every one of them
        for p in rebuilt.parameters():
            p.normal_()
    load_quantized_state(rebuilt, state)
    with torch.no_grad():
        got, again = rebuilt(input_ids=ids).last_hidden_state, int8(input_ids=ids).last_hidden_state
    torch.testing.assert_close(got, again, rtol=0, atol=0)
    cosine = torch.nn.functional.cosine_similarity(got.flatten(), expected.flatten(), dim=0).item()
    assert cosine > 0.99 and not torch.allclose(got, expected, atol=1e-6)  # close to fp32, but not fp32


@pytest.mark.parametrize("scheme", ["int8", "int8_per_tensor"])
def test_int8_weights_and_outputs_are_pytorchs_dynamic_quantization(tiny, scheme, monkeypatch):
    """Our int8 Linear quantizes weights as `torch.ao.quantization.quantize_dynamic` does, and computes what
    PyTorch's dynamic Linear computes from them at the same activation bits; it pickles (`spawn` workers)."""
    import torch
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    from spacy_spanbert.models import quantize
    from spacy_spanbert.models.quantize import DynamicInt8Linear

    monkeypatch.setattr(quantize, "_reduce_range", lambda: True)  # PyTorch's module always uses 7 bits on x86

    ours = quantize_encoder(_encoder(tiny), scheme)
    qconfig = per_channel_dynamic_qconfig if scheme == "int8" else default_dynamic_qconfig
    theirs = quantize_dynamic(_encoder(tiny), {torch.nn.Linear: qconfig}, dtype=torch.qint8)
    theirs_linears = {n: m for n, m in theirs.named_modules() if hasattr(m, "weight") and callable(m.weight)}
    ours_linears = {n: m for n, m in ours.named_modules() if isinstance(m, DynamicInt8Linear)}
    assert ours_linears and ours_linears.keys() == theirs_linears.keys()
    for name, mine in ours_linears.items():
        torch.testing.assert_close(mine.weight().int_repr(), theirs_linears[name].weight().int_repr(), rtol=0, atol=0)
        torch.testing.assert_close(mine.bias(), theirs_linears[name].bias(), rtol=0, atol=0)
    ids = torch.tensor([[2, 10, 11, 12, 13, 3]])
    with torch.no_grad():
        got = ours(input_ids=ids).last_hidden_state
        torch.testing.assert_close(got, theirs(input_ids=ids).last_hidden_state, rtol=0, atol=0)
        again = pickle.loads(pickle.dumps(ours))(input_ids=ids).last_hidden_state
    torch.testing.assert_close(again, got, rtol=0, atol=0)


def test_state_from_another_model_is_one_clear_error(tiny):
    state = quantized_state(quantize_encoder(_encoder(tiny), "int8"))
    state.pop("embeddings.word_embeddings.weight")
    with pytest.raises(ValueError, match="do not fit the model.*re-run spanbert-quantize"):
        load_quantized_state(quantize_encoder(_encoder(tiny), "int8"), state)


@pytest.mark.slow  # subprocesses or a long end-to-end run: CI runs it, the quick loop skips it
def test_cli_saves_a_smaller_int8_pipeline_that_loads_packages_and_predicts_as_quantized(tiny, tmp_path):
    out = tmp_path / "int8"
    done = subprocess.run([sys.executable, "-m", "spacy", "spanbert-quantize", str(tiny["pipeline"]), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "components.transformer.model: int8" in done.stdout
    assert dir_size(out / "transformer") < 0.8 * dir_size(tiny["pipeline"] / "transformer")
    config = spacy.util.load_config(out / "config.cfg", interpolate=False)
    assert config["components"]["transformer"]["model"]["@architectures"] == ARCHITECTURE
    assert config["components"]["transformer"]["model"]["quantize"] == "int8"
    assert config["components"]["transformer"]["model"]["case_types"] is True
    shims = [s for node in srsly.msgpack_loads((out / "transformer" / "model").read_bytes())["shims"] for s in node]
    state = srsly.msgpack_loads(srsly.msgpack_loads(shims[0])["state"])["state"]
    assert state[8:10] == b'{"' and b'"spanbert_quantize":"int8"' in state[:20000]  # safetensors, not a pickle

    # a fresh process loads the int8 pipeline and predicts exactly what the in-process quantized model predicts
    loaded = _child(out)
    nlp = spacy.load(tiny["pipeline"], config=OVERRIDES)
    fp32 = spacy.load(tiny["pipeline"])
    for doc, fp32_doc, got in zip(nlp.pipe(TEXTS), fp32.pipe(TEXTS), loaded):
        assert got["ents"] == [[e.start_char, e.end_char, e.label_] for e in doc.ents]
        numpy.testing.assert_allclose(got["scores"], doc.spans["spanbert_ents"].attrs["scores"], rtol=1e-5)
        vectors = numpy.asarray(got["vectors"])
        numpy.testing.assert_allclose(vectors, doc._.trf_data.tensors[0], rtol=1e-5, atol=1e-6)
        reference = fp32_doc._.trf_data.tensors[0]
        assert not numpy.allclose(vectors, reference, atol=1e-6)  # it really is the quantized encoder
        cosine = (vectors * reference).sum() / (numpy.linalg.norm(vectors) * numpy.linalg.norm(reference))
        assert cosine > 0.99

    # `spacy package` takes it as it is, and the packaged data loads in a fresh process
    (tmp_path / "pkg").mkdir()
    done = subprocess.run([sys.executable, "-m", "spacy", "package", str(out), str(tmp_path / "pkg"), "--name",
                           "tiny_int8", "--version", "0.0.1", "--build", "none"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    data = tmp_path / "pkg" / "en_tiny_int8-0.0.1" / "en_tiny_int8" / "en_tiny_int8-0.0.1"
    assert any("spacy-spanbert" in req for req in srsly.read_json(tmp_path / "pkg" / "en_tiny_int8-0.0.1" / "meta.json")["requirements"])
    assert _child(data) == loaded


def test_config_setting_quantizes_at_load_pickles_and_an_fp32_config_refuses_int8_weights(tiny, tmp_path):
    nlp = spacy.load(tiny["pipeline"], config=OVERRIDES)
    assert quantized_scheme(encoder_of(nlp.get_pipe("transformer").model).transformer) == "int8"
    restored = pickle.loads(pickle.dumps(nlp))  # multiprocessing's `spawn` start method pickles the pipeline
    for doc, other in zip(nlp.pipe(TEXTS), restored.pipe(TEXTS)):
        numpy.testing.assert_array_equal(other._.trf_data.tensors[0], doc._.trf_data.tensors[0])
    nlp.to_disk(tmp_path / "int8")
    fp32 = spacy.util.load_config(tmp_path / "int8" / "config.cfg", interpolate=False)
    fp32["components"]["transformer"]["model"]["quantize"] = None
    fp32.to_disk(tmp_path / "int8" / "config.cfg")
    with pytest.raises(ValueError, match=r"is int8 \('int8'\).*an fp32 one.*quantize = \"int8\"") as err:
        spacy.load(tmp_path / "int8")
    assert "\n" not in str(err.value)


def test_int8_transformer_refuses_training_and_gpus(tiny, monkeypatch):
    from spacy.training import Example

    nlp = spacy.load(tiny["pipeline"], config=OVERRIDES)
    examples = [Example.from_dict(nlp.make_doc("John saw London ."), {"entities": [(0, 4, "PER")]})]
    with pytest.raises(ValueError, match="for prediction only.*spanbert-quantize"):
        nlp.update(examples)
    check_cpu("int8", "cpu")
    check_cpu(None, "gpu")
    gpu_ops = type("GpuOps", (), {"device_type": "gpu"})()
    from spacy_spanbert.models import transformer

    monkeypatch.setattr(transformer, "get_current_ops", lambda: gpu_ops)  # what spacy.require_gpu() leads to
    with pytest.raises(ValueError, match=r"runs on a CPU only.*'gpu'.*--gpu-id -1") as err:
        spacy.load(tiny["pipeline"], config=OVERRIDES)
    assert "\n" not in str(err.value)


@pytest.mark.slow  # subprocesses or a long end-to-end run: CI runs it, the quick loop skips it
def test_bad_input_gives_one_line_errors_before_any_work(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved spaCy pipeline"):
        run_quantize(tmp_path / "nope", tmp_path / "out")
    blank = spacy.blank("en")
    blank.add_pipe("sentencizer")
    blank.to_disk(tmp_path / "blank")
    with pytest.raises(ValueError, match="has no spacy-spanbert.SpanBERT transformer"):
        run_quantize(tmp_path / "blank", tmp_path / "out")
    with pytest.raises(ValueError, match="Unknown quantize setting 'int4'"):
        run_quantize(tiny["pipeline"], tmp_path / "out", "int4")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    done = subprocess.run([sys.executable, "-m", "spacy", "spanbert-quantize", str(tiny["pipeline"]),
                           str(tmp_path / "taken")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"✘ {tmp_path / 'taken'} already exists: pass a new (or empty) "
                                                f"output directory, or remove it"]
    already = {"components": {"transformer": {"model": {"@architectures": ARCHITECTURE, "quantize": "int8"}}}}
    with pytest.raises(ValueError, match="already quantized"):
        quantize_overrides(already, "int8", "x")


def test_a_span_component_with_its_own_transformer_is_found(tiny):
    nlp = spacy.blank("en")
    nlp.add_pipe("transformer", config=transformer_config(tiny["bert"]))
    nlp.add_pipe("spanbert_ner")  # the standalone default: a SpanBERT transformer of its own
    overrides = quantize_overrides(nlp.config.interpolate(), "int8_per_tensor", "x")
    assert overrides == {
        "components.transformer.model.quantize": "int8_per_tensor",
        "components.spanbert_ner.model.tok2vec.quantize": "int8_per_tensor"}


@pytest.mark.slow  # subprocesses or a long end-to-end run: CI runs it, the quick loop skips it
def test_activations_get_8_bits_only_where_the_cpu_has_vnni_and_7_when_asked():
    import os

    code = "from spacy_spanbert.models.quantize import activation_bits; print(activation_bits())"
    from spacy_spanbert.cpu import AVX2_EMULATION, has_int8_vnni

    expected = "8" if has_int8_vnni() else "7"
    # a plain AVX2 CPU (emulated: fbgemm then runs its saturating AVX2 kernels) gets 7 bits whatever this CPU has
    for extra, setting, bits in (({}, "0", expected), ({}, "1", "7"), (AVX2_EMULATION, "0", "7")):
        env = {**os.environ, **extra, "SPACY_SPANBERT_INT8_REDUCE_RANGE": setting}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert done.stdout.strip() == bits, done.stderr[-2000:]

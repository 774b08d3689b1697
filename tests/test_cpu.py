"""Precision and int8 choices follow what the CPU can do, on this machine and on a plain AVX2 one.

A plain AVX2 CPU is emulated in a child process with `cpu.AVX2_EMULATION` (PyTorch's, oneDNN's and fbgemm's
dispatch settings), so these tests check the AVX2 path on any x86-64 machine, and the native path where this
machine has AVX512-BF16/VNNI. No speed is asserted: a bf16 choice on an AVX2 CPU is the bug they catch.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from spacy_spanbert import cpu

X86 = cpu._is_x86()


def _child(code: str, extra_env: dict) -> str:
    env = {**os.environ, **extra_env}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_probes_answer_without_error_and_agree_with_the_cpu_flags():
    facts = cpu.describe()
    assert set(facts) >= {"kernel_capability", "native_bf16", "int8_vnni"}
    flags = cpu.cpu_flags()
    if X86 and not flags & {"avx512_bf16", "amx_bf16"}:
        assert facts["native_bf16"] is False
    if X86 and "avx512_vnni" not in flags:
        assert facts["int8_vnni"] is False


@pytest.mark.slow  # subprocesses or a long end-to-end run: CI runs it, the quick loop skips it
@pytest.mark.skipif(not X86, reason="the AVX2 emulation settings are x86 dispatch settings")
def test_an_avx2_cpu_gets_float32_and_7_bit_int8_everywhere(tiny_bert_dir):
    """Under the AVX2 emulation every "auto" picks float32, int8 keeps 7-bit activations, and the transformer's
    cpu_bf16 = "auto" is off, whatever this machine has."""
    code = f"""
    import json, warnings
    from spacy_spanbert import cpu
    from spacy_spanbert.pretraining.run import resolve_precision
    from spacy_spanbert.models.quantize import activation_bits
    from spacy_spanbert.models.transformer import create_spanbert_transformer, encoder_of
    from spacy_transformers.span_getters import configure_strided_spans
    model = create_spanbert_transformer({str(tiny_bert_dir)!r}, configure_strided_spans(32, 24), cpu_bf16="auto")
    print(json.dumps({{"capability": cpu.kernel_capability(), "bf16": cpu.has_native_bf16(),
                      "vnni": cpu.has_int8_vnni(), "pretrain": resolve_precision("auto", on_gpu=False),
                      "int8_bits": activation_bits(), "cpu_bf16": encoder_of(model).cpu_bf16}}))
    """
    facts = json.loads(_child(code, cpu.AVX2_EMULATION))
    assert facts == {"capability": "AVX2", "bf16": False, "vnni": False, "pretrain": "fp32", "int8_bits": 7,
                     "cpu_bf16": False}


def test_auto_precision_is_bf16_exactly_where_the_cpu_runs_it_natively():
    from spacy_spanbert.pretraining.run import resolve_precision

    assert resolve_precision("auto", on_gpu=False) == ("bf16" if cpu.has_native_bf16() else "fp32")
    assert resolve_precision("fp32", on_gpu=False) == "fp32"
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        resolve_precision("fp16", on_gpu=False)


@pytest.mark.slow  # subprocesses or a long end-to-end run: CI runs it, the quick loop skips it
@pytest.mark.skipif(not X86, reason="the AVX2 emulation settings are x86 dispatch settings")
def test_bf16_asked_for_on_an_avx2_cpu_warns_once_with_the_fix(tiny_bert_dir):
    code = f"""
    import json, logging, warnings
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from spacy_spanbert.pretraining.run import resolve_precision
    from spacy_spanbert.models.transformer import create_spanbert_transformer, encoder_of
    from spacy_transformers.span_getters import configure_strided_spans
    assert resolve_precision("bf16", on_gpu=False) == "bf16"  # kept: the user asked for it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        create_spanbert_transformer({str(tiny_bert_dir)!r}, configure_strided_spans(32, 24), cpu_bf16=True)
    print(json.dumps([str(w.message) for w in caught]))
    """
    env = {**os.environ, **cpu.AVX2_EMULATION}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    logged = [line for line in done.stderr.splitlines() if "training.precision = bf16" in line]
    assert len(logged) == 1 and "emulated" in logged[0] and "auto" in logged[0]
    warned = [m for m in json.loads(done.stdout.strip().splitlines()[-1]) if "cpu_bf16" in m]
    assert len(warned) == 1 and "\n" not in warned[0] and "emulated" in warned[0] and '"auto"' in warned[0]


def test_the_workflow_plan_names_each_steps_precision_and_why():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
    try:
        from precision_plan import plan
    finally:
        sys.path.pop(0)
    lines = plan("auto", "auto", gpu_id=-1)
    expected = "bfloat16" if cpu.has_native_bf16() else "float32"
    assert [line.split(":")[0] for line in lines] == ["pretrain", "train"]
    assert all(f"-> {expected}, because" in line for line in lines)
    forced = plan("bf16", "false", gpu_id=-1)
    assert "-> bfloat16" in forced[0] and "-> float32" in forced[1]
    assert ("WARNING" in forced[0]) is (not cpu.has_native_bf16())

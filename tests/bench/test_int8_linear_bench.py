"""bench/int8_linear.py: every Linear shape of the encoder and a whole encoder call, float32 against int8, written as
JSON and Markdown; a malformed call is one line before any model is loaded."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import int8_linear

ROOT = Path(__file__).resolve().parents[2]


def test_times_each_linear_shape_and_the_whole_encoder(tmp_path, tiny_bert_dir):
    out = tmp_path / "int8_linear.json"
    int8_linear.main(["--encoder", str(tiny_bert_dir), "--calls", "2x8", "--repeats", "1", "--threads", "1",
                      "--output", str(out)])
    result = json.loads(out.read_text())
    whats = [row["what"] for row in result["rows"]]
    assert whats == ["query/key/value, attention output", "feed-forward in", "feed-forward out", "whole encoder call"]
    for row in result["rows"]:
        assert row["call"] == "2x8" and row["fp32_ms"] > 0 and row["int8_ms"] > 0
        assert row["speedup"] == pytest.approx(row["fp32_ms"] / row["int8_ms"])
    assert result["activation_bits"] in (7, 8)
    markdown = out.with_suffix(".md").read_text()
    assert "| whole encoder call |" in markdown and "Machine:" in markdown and "Rerun: `" in markdown


def test_the_float32_encoder_is_timed_as_it_was_loaded(tiny_bert_dir):
    from transformers import AutoModel

    from spacy_spanbert.models.quantize import DynamicInt8Linear

    encoder = AutoModel.from_pretrained(tiny_bert_dir).eval()
    (row,) = int8_linear.encoder_rows(encoder, [(1, 8)], repeats=1)
    # the int8 call runs on a quantized copy: the float32 row's encoder keeps its float32 Linears
    assert not any(isinstance(m, DynamicInt8Linear) for m in encoder.modules())
    assert row["fp32_ms"] > 0 and row["int8_ms"] > 0


@pytest.mark.parametrize("args,message", [(["--calls", "3by135"], "WINDOWSxWORDPIECES"),
                                          (["--calls", "3x0"], "two positive numbers"),
                                          (["--threads", "0"], "at least 1")])
def test_bad_arguments_are_one_line(tmp_path, args, message):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "int8_linear.py"), *args,
                           "--output", str(tmp_path / "x.json")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "x.json").exists()

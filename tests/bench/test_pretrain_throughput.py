"""bench/pretrain_throughput.py: MFU arithmetic, the peak table, and a smoke run with DataLoader workers."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
import pretrain_throughput as bench  # noqa: E402


def test_peak_table_and_override():
    assert bench.peak_tflops("NVIDIA H200", "bf16") == 989.0
    assert bench.peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.0
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.0
    assert bench.peak_tflops("NVIDIA A100-SXM4-80GB", "fp32") == 19.5
    assert bench.peak_tflops("NVIDIA L4", "bf16") is None
    assert bench.peak_tflops("NVIDIA L4", "bf16", override=121.0) == 121.0


def test_bert_base_costs_about_0_6_gflop_per_token_at_seq_512():
    from transformers import BertConfig

    per_token = bench.step_flops(BertConfig(), 512, 1, 0, 0)
    assert 0.5e9 < per_token < 0.65e9  # 6 x 85M dense parameters + attention
    # the vocabulary projection on every token (HF's full MLM) costs a further ~6 x 24M per token
    assert bench.step_flops(BertConfig(), 512, 1, 1, 0) - per_token == pytest.approx(6 * (768 * 768 + 768 * 30522))


def test_quick_run_with_loader_workers_reports_mfu(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["pretrain_throughput.py", "--quick", "--device", "cpu", "--precisions", "fp32",
                                      "--loader-workers", "1", "--peak-tflops", "1.0", "--out-dir", str(tmp_path)])
    bench.main()
    result = json.loads((tmp_path / "pretrain_throughput_quick.json").read_text())
    assert result["loader_workers"] == 1
    assert {r["impl"] for r in result["rows"]} == set(bench.IMPLS)
    assert all(r["mfu"] is not None and 0 < r["mfu"] < 1 for r in result["rows"])
    assert "MFU" in (tmp_path / "pretrain_throughput_quick.md").read_text()
    # the FLOP bound: HF's full MLM projects every token onto the vocabulary, so it does more work than ours; the
    # masked-only loop does less (ours projects the SBO targets as well)
    flops = {r["impl"]: r["step_flops"] for r in result["rows"]}
    assert flops["hf_full"] > flops["spanbert"] > flops["hf_masked_only"] > 0
    row = next(line for line in (tmp_path / "pretrain_throughput_quick.md").read_text().splitlines()
               if line.startswith("| 64 |"))
    bound = f"{flops['hf_full'] / flops['spanbert']:.2f}x / {flops['hf_masked_only'] / flops['spanbert']:.2f}x"
    assert f"| {bound} |" in row

"""`python -m spacy benchmark speed MODEL DATA` runs on our pipelines, fp32 and int8, and reports words/s with its
95% confidence interval (the figures the README quotes come from this command)."""
import subprocess
import sys

import pytest

from bench.quantize import MEAN, to_markdown
from tests.fixtures.tiny_pipeline import build_tiny_ner_pipeline


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    paths = build_tiny_ner_pipeline(tmp_path_factory.mktemp("bench_speed"), steps=2)
    int8 = paths["pipeline"].parent / "int8"
    done = subprocess.run([sys.executable, "-m", "spacy", "spanbert-quantize", str(paths["pipeline"]), str(int8)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return {**paths, "int8": int8}


@pytest.mark.slow  # subprocesses or a long end-to-end run: CI runs it, the quick loop skips it
@pytest.mark.parametrize("which", ["pipeline", "int8"])
def test_spacy_benchmark_speed_reports_words_per_second_with_a_confidence_interval(tiny, which):
    # the fewest batches spaCy allows (30), 2 docs each, one warm-up pass: a few seconds on the tiny BERT
    done = subprocess.run([sys.executable, "-m", "spacy", "benchmark", "speed", str(tiny[which]), str(tiny["data"]),
                           "--batches", "30", "--batch-size", "2", "--warmup", "1"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    found = MEAN.search(done.stdout)  # the line bench/quantize.py reads
    assert found, done.stdout[-2000:]
    mean, low, high = (float(x) for x in found.groups())
    assert mean > 0 and low >= 0 and high >= 0


def test_quantize_report_gives_f_lost_and_speed_ratios_with_intervals():
    machine = {"cpu": "Test CPU", "cpu_count": 2, "torch_threads": 2, "threads": 2, "gpu": None, "python": "3.11",
               "versions": {}, "git_commit": "abc", "date": "2026-01-01 00:00 UTC"}
    row = {"size_mb": 93.2, "transformer_mb": 88.1, "p": 0.9, "r": 0.85, "f": 0.8767, "path": "fp32"}
    result = {
        "accuracy": {"machine": machine, "model": {"path": "m", "max_steps": 400, "dev_ents_f": 0.91},
                     "test": "corpus/test.spacy", "activation_bits": 8,
                     "rows": [{"pipeline": "fp32", **row},
                              {"pipeline": "int8", **row, "size_mb": 61.2, "transformer_mb": 56.0, "f": 0.8729}]},
        "speed": {"machine": machine, "data": "corpus/test.spacy", "batch_size": 32, "batches": 50, "warmup": 3,
                  "runs": [{"pipeline": "fp32", "repeat": 0, "words_per_s": 3000.0, "ci95": [2900.0, 3100.0]},
                           {"pipeline": "int8", "repeat": 0, "words_per_s": 5400.0, "ci95": [5200.0, 5600.0]},
                           {"pipeline": "trf_ner", "repeat": 0, "words_per_s": 2000.0, "ci95": [1950.0, 2050.0]}]}}
    md = to_markdown(result)
    assert "| int8 | 61.2 | 56.0 | 90.00 | 85.00 | 87.29 | -0.38 |" in md
    assert "| int8 | 0 | 5,400 | 5,200 – 5,600 | 1.80x | – |" in md
    assert "int8 / fp32: 1.80x; fp32 / transformer + ner: 1.50x; int8 / transformer + ner: 2.70x." in md

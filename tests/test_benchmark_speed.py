"""`python -m spacy benchmark speed MODEL DATA` runs on our pipelines, fp32 and int8, and reports words/s with its
95% confidence interval (the figures the README quotes come from this command)."""
import re
import subprocess
import sys

import pytest

from bench.tiny_pipeline import build_tiny_ner_pipeline

MEAN = re.compile(r"Mean: ([\d.]+) words/s \(95% CI: -?([\d.]+) \+([\d.]+)\)")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    paths = build_tiny_ner_pipeline(tmp_path_factory.mktemp("bench_speed"), steps=2)
    int8 = paths["pipeline"].parent / "int8"
    done = subprocess.run([sys.executable, "-m", "spacy", "spanbert-quantize", str(paths["pipeline"]), str(int8)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return {**paths, "int8": int8}


@pytest.mark.parametrize("which", ["pipeline", "int8"])
def test_spacy_benchmark_speed_reports_words_per_second_with_a_confidence_interval(tiny, which):
    # the fewest batches spaCy allows (30), 2 docs each, one warm-up pass: a few seconds on the tiny BERT
    done = subprocess.run([sys.executable, "-m", "spacy", "benchmark", "speed", str(tiny[which]), str(tiny["data"]),
                           "--batches", "30", "--batch-size", "2", "--warmup", "1"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    found = MEAN.search(done.stdout)
    assert found, done.stdout[-2000:]
    mean, low, high = (float(x) for x in found.groups())
    assert mean > 0 and low >= 0 and high >= 0

"""bench/ is one package: every script reaches its helpers as `bench.*`, run by path or imported, never twice."""
import subprocess
import sys
from pathlib import Path

import pytest

from bench import inference_speed

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["accuracy", "calibration", "inference_speed", "pretraining_payoff", "quantize", "relations", "report",
           "textcat", "workflow"]


def test_one_process_loads_each_helper_once():
    code = (
        "import sys\n"
        "from bench import pretraining_payoff\n"
        "assert 'bench.accuracy' not in sys.modules, 'the payoff benchmark imports the accuracy script'\n"
        "from bench import accuracy, inference_speed, report, workflow, common, ner_runs\n"
        "assert 'common' not in sys.modules and 'ner_runs' not in sys.modules, 'a helper was loaded twice'\n"
        "assert inference_speed.write_json is common.write_json\n"
        "assert workflow.write_results is common.write_results\n"
        "assert pretraining_payoff.train_and_evaluate is ner_runs.train_and_evaluate is accuracy.train_and_evaluate\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_runs_by_path(script):
    """`python bench/NAME.py --help` from another directory: the `bench` imports resolve without an install."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / f"{script}.py"), "--help"], cwd="/",
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout


def test_inference_markdown_compares_with_the_bare_transformer_and_names_the_machine():
    machine = {"cpu": "Test CPU", "cpu_count": 2, "torch_threads": 2, "threads": 2, "gpu": None, "python": "3.11",
               "versions": {"spacy": "3.8"}, "git_commit": "abc", "date": "2026-01-01 00:00 UTC"}
    row = {"peak_rss_mb": 900.0, "peak_rss_during_pipe_mb": 800.0, "wall_s": 1.0, "trained": False}
    result = {"machine": machine, "threads": 2, "batch_size": 32, "unit": "sentence", "texts": 10, "data": "x.spacy",
              "model": "enc", "total_wall_s": 3.0,
              "results": [{"pipeline": "spanbert_ner", "words_per_s": 900.0, **row},
                          {"pipeline": "trf_only", "words_per_s": 1000.0, **row},
                          {"pipeline": "span_marker", "skipped": "not importable"}]}
    md = inference_speed.to_markdown(result)
    assert "| spanbert_ner | 900 | 0.90x | 800.0 | 900 | 1.0 | False |" in md
    assert "spanbert_ner words/s relative to the others: 0.90x trf_only." in md
    assert "span_marker: skipped (not importable)" in md
    assert "Machine: Test CPU" in md and "spacy 3.8" in md

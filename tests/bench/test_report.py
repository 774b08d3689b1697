"""bench/report.py and the benchmarks' Markdown: what the docs show is exactly what the results files hold."""
import json

import pytest

from bench import accuracy, ner_runs, report
from bench.common import fmt_stat, markdown_table, summarize
from bench.ner_runs import summarize_runs

MACHINE = {"cpu": "Test CPU", "cpu_count": 2, "threads": "default", "gpu": None, "python": "3.11",
           "versions": {"spacy": "3.8"}, "git_commit": "abc", "date": "2026-01-01 00:00 UTC"}


def _run(seed, f, per_type=None, status="ok"):
    if status != "ok":
        return {"seed": seed, "status": "failed", "stage": "train", "error": "boom | bad", "error_tail": "x\nboom | bad"}
    per_type = per_type or {"LOC": {"p": f, "r": f, "f": f}, "PER": {"p": 1.0, "r": 1.0, "f": 1.0}}
    return {"seed": seed, "status": "ok", "p": f, "r": f, "f": f, "per_type": per_type, "train_wall_s": 90.0}


def _accuracy_result():
    ok_runs = [_run(1, 0.80), _run(2, 0.82), _run(3, 0.84)]
    systems = {
        "spanbert_ner": {"label": "spanbert_ner (ours)", "status": "ok", "runs": ok_runs},
        "trf_ner": {"label": "spacy-transformers + ner", "status": "failed", "reason": "boom | bad",
                    "runs": [_run(1, 0, status="failed")]},
        "span_marker": {"label": "SpanMarker", "status": "not run", "reason": "span-marker not installed", "runs": []},
    }
    for s in systems.values():
        if s["runs"]:
            s["summary"] = summarize_runs(s["runs"])
    settings = {"quick": False, "encoder": "/x/all-MiniLM-L6-v2", "corpus_dir": "corpus", "seeds": [1, 2, 3],
                "max_steps": 600}
    return {"benchmark": "accuracy", "command": "python bench/accuracy.py", "settings": settings,
            "machine": MACHINE, "systems": systems, "wall_s": 300.0}


def test_summary_is_mean_and_sample_std():
    stat = summarize([0.80, 0.82, 0.84])
    assert stat["mean"] == pytest.approx(0.82) and stat["std"] == pytest.approx(0.02) and stat["n"] == 3
    assert fmt_stat(stat) == "82.0 ± 2.0"
    assert fmt_stat(summarize([0.5])) == "50.0"  # one seed: no spread is claimed
    assert summarize([]) is None and fmt_stat(None) == "–"


def test_failed_runs_are_left_out_of_the_statistics():
    summ = summarize_runs([_run(1, 0.9), _run(2, 0, status="failed")])
    assert summ["n_ok"] == 1 and summ["n_failed"] == 1 and summ["f"]["mean"] == pytest.approx(0.9)
    assert summ["per_type_f"]["LOC"]["mean"] == pytest.approx(0.9)


def test_markdown_table_escapes_pipes():
    table = markdown_table(["a", "b"], [["x|y", "z"]])
    assert table.splitlines()[2] == "| x\\|y | z |"


def test_accuracy_markdown_reports_every_system_with_its_status():
    md = accuracy.render_markdown(_accuracy_result())
    row = next(line for line in md.splitlines() if line.startswith("| spanbert_ner"))
    assert "82.0 ± 2.0" in row and "1m30s" in row  # F and training time of the three seeds
    assert "| F LOC | F PER |" in md
    assert "failed: boom \\| bad" in md and "not run: span-marker not installed" in md
    assert "Test CPU" in md and "QUICK" not in md
    assert "reused" not in md


def test_accuracy_markdown_says_how_many_runs_were_reused():
    """With --reuse the total wall time covers only this invocation's runs: the table must say so."""
    result = _accuracy_result()
    result["systems"]["spanbert_ner"]["runs"][0]["reused"] = True
    assert "(1 run(s) reused from earlier invocations" in accuracy.render_markdown(result)


def test_the_page_gets_one_section_per_claim_between_its_markers(tmp_path):
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    (results / "quantize.md").write_text("### int8 table\n\nMachine: X; commit 0123abc; today.\n")
    (results / "accuracy.md").write_text("### Accuracy table (issue 4)\n")
    (results / "accuracy-quick.md").write_text("### Quick table\n")
    (results / "investigation.md").write_text("### An investigation\n")
    (results / "accuracy.png").write_bytes(b"png")
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# T\n\n{report.START}\nold numbers\n{report.END}\n\nfooter\n")
    assert report.update_page(page, results) is True
    text = page.read_text()
    assert "old numbers" not in text and "Quick table" not in text and text.endswith("footer\n")
    assert "An investigation" not in text  # a results file that backs no claim stays off the page
    assert text.index("## NER accuracy") < text.index("Accuracy table") < text.index("![accuracy](bench/accuracy.png)")
    assert text.index("![accuracy]") < text.index("## int8 inference") < text.index("int8 table")
    assert "commit 0123abc" not in text and "issue 4" not in text and "Machine: X; today." in text
    assert report.update_page(page, results) is False  # idempotent
    (results / "quantize_avx2.md").write_text("### int8 on AVX2\n")
    assert report.update_page(page, results, check=True) is True
    assert "int8 on AVX2" not in page.read_text()  # check mode writes nothing


def test_a_page_without_markers_is_a_clear_error(tmp_path):
    page = tmp_path / "benchmarks.md"
    page.write_text("# no markers\n")
    with pytest.raises(ValueError, match="results:start"):
        report.update_page(page, tmp_path)


def test_plots_are_written_from_json(tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "accuracy.json").write_text(json.dumps(_accuracy_result()))
    (tmp_path / "other.json").write_text(json.dumps({"benchmark": "speed"}))
    written = report.regenerate_plots(tmp_path)
    assert [p.name for p in written] == ["accuracy.png"]
    assert (tmp_path / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_warmup_reaches_every_system():
    """--warmup-steps must give the spaCy systems and span-marker the same schedule, or the comparison is unequal."""
    args = accuracy.parse_args(["--max-steps", "100", "--warmup-steps", "20"])
    assert ner_runs.warmup_overrides(args) == ["--training.optimizer.learn_rate.warmup_steps", "20"]
    assert accuracy.span_marker_budget(args)["warmup_steps"] == 20
    quick = accuracy.parse_args(["--quick", "--max-steps", "10"])
    assert ner_runs.warmup_overrides(quick)[-1] == "2" and accuracy.span_marker_budget(quick)["warmup_steps"] == 2
    default = accuracy.parse_args(["--max-steps", "100"])  # each config keeps its own warmup
    assert ner_runs.warmup_overrides(default) == [] and accuracy.span_marker_budget(default)["warmup_steps"] == 150
    with pytest.raises(ValueError, match="--warmup-steps"):
        accuracy.parse_args(["--max-steps", "100", "--warmup-steps", "-1"])

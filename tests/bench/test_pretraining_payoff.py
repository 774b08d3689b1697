"""bench/pretraining_payoff.py, payoff_report.py, jobs.py: text, subsets, reuse check, job pool, goal, Markdown."""
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2]))
from bench import jobs as job_pool, payoff_report as report, pretraining_payoff as bench  # noqa: E402

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O

Peter NNP B-NP B-PER

-DOCSTART- -X- -X- O

Second NN B-NP O
doc NN I-NP O
"""


def test_conll_documents_split_at_docstart_with_one_sentence_per_line():
    docs = bench.conll_documents(CONLL.splitlines())
    assert docs == [["EU rejects", "Peter"], ["Second doc"]]


def test_subset_is_fixed_per_size_and_differs_between_sizes():
    a = bench.subset_indices(1000, 2, seed=0)
    assert a == bench.subset_indices(1000, 2, seed=0)  # the same subset for every encoder and fine-tune seed
    assert len(a) == 20 and a == sorted(a) and len(set(a)) == 20
    assert bench.subset_indices(1000, 2, seed=1) != a
    b = bench.subset_indices(1000, 10, seed=0)
    assert len(b) == 100 and set(b) != set(a[:20]) | set()
    assert bench.subset_indices(10, 1, seed=0) and len(bench.subset_indices(10, 1, seed=0)) == 1  # at least one
    assert bench.subset_indices(7, 100, seed=0) == list(range(7))


@pytest.mark.parametrize("percent", [0, -5, 150])
def test_subset_rejects_sizes_outside_0_100(percent):
    with pytest.raises(ValueError, match="--sizes"):
        bench.subset_indices(100, percent, seed=0)


def test_steps_must_match_sizes_and_deadline_must_parse():
    with pytest.raises(SystemExit):
        bench.parse_args(["--sizes", "2", "10", "--steps", "150"])
    now = datetime(2026, 11, 29, 5, 0, tzinfo=timezone.utc)
    assert bench.parse_deadline("07:05", now) == datetime(2026, 11, 29, 7, 5, tzinfo=timezone.utc).timestamp()
    assert bench.parse_deadline(None) is None
    with pytest.raises(ValueError, match="HH:MM"):
        bench.parse_deadline("soon", now)


def _run(f, status="ok"):
    return {"status": status, "f": f, "p": f, "r": f, "train_wall_s": 10.0, "eval_wall_s": 2.0, "per_type": {}}


def _grid():
    return {"2%": {"minilm": [_run(0.50), _run(0.52)], "subword_mlm": [_run(0.515), _run(0.525)],
                   "span_sbo": [_run(0.52), _run(0.53), _run(0.0, "failed")]},
            "10%": {"minilm": [_run(0.70)], "subword_mlm": [_run(0.72)], "span_sbo": []}}


def test_summary_and_goal_use_only_finished_runs():
    summary = report.summarize_grid(_grid())
    assert summary["2%"]["span_sbo"]["n_ok"] == 2 and summary["2%"]["span_sbo"]["n_failed"] == 1
    assert summary["2%"]["span_sbo"]["f"]["mean"] == pytest.approx(0.525)
    checks = report.goal_checks(summary)
    assert [c["size"] for c in checks] == ["2%", "2%"]  # 10% has no span_sbo run: not judged
    vs_minilm, vs_subword = checks
    assert vs_minilm["diff_f"] == pytest.approx(0.015) and vs_minilm["met"]  # +1.5 F >= +1.0 F
    assert vs_subword["diff_f"] == pytest.approx(0.005) and vs_subword["met"]
    text = report.verdict(checks)
    assert "+1.5 F over 2 seed(s)" in text and "NOT met" not in text


def test_goal_not_met_below_one_point():
    summary = report.summarize_grid({"2%": {"minilm": [_run(0.50)], "subword_mlm": [_run(0.51)],
                                           "span_sbo": [_run(0.505)]}})
    checks = report.goal_checks(summary)
    assert [c["met"] for c in checks] == [False, False]
    assert "NOT met, +0.5 F" in report.verdict(checks)


def test_run_jobs_respects_dependencies_failures_and_deadline():
    order, results, skipped = [], {}, []

    def job(key, status="ok", deps=(), est=None):
        def run():
            order.append(key)
            return {"status": status}
        return job_pool.Job(key, run, lambda rec: results.__setitem__(key, rec["status"]), deps, lambda: est)

    jobs = [job("pre:a"), job("pre:b", status="failed"), job("ft:a", deps=("pre:a",)), job("ft:b", deps=("pre:b",)),
            job("slow", est=10_000.0)]
    published = []
    soon = datetime.now(timezone.utc).timestamp() + 60
    job_pool.run_jobs(jobs, 1, deadline=soon, publish=lambda: published.append(1),
                      skipped=lambda j, why: skipped.append((j.key, why)))
    assert order == ["pre:a", "pre:b", "ft:a"]
    assert results == {"pre:a": "ok", "pre:b": "failed", "ft:a": "ok"}
    assert dict(skipped)["ft:b"].startswith("not run: a job it needs")
    assert "deadline" in dict(skipped)["slow"]
    assert len(published) == 3  # after every finished job


def _result():
    runs = _grid()
    summary = report.summarize_grid(runs)
    checks = report.goal_checks(summary)
    result = {
        "settings": {"pretrain_steps": 320, "pretrain_batch_size": 16, "pretrain_max_length": 128,
                     "pretrain_tokens": 655360, "pretrain_lr": 1e-4, "precision": "bf16", "head_lr_factor": 10.0,
                     "pretrain_seed": 0, "seeds": [1, 2, 3], "threads_per_job": 1, "parallel": 2,
                     "heldout_blocks": 200, "steps": {"2%": 150, "10%": 250}},
        "text": {"news_words": 1000, "conll_train_words": 200, "conll_train_docs": 3},
        "subsets": {"2%": {"docs": 36, "of_docs": 1793, "words": 4000, "entities": 500, "percent": 2.0},
                    "10%": {"docs": 179, "of_docs": 1793, "words": 20000, "entities": 2500, "percent": 10.0}},
        "encoders": {"minilm": {"pretrain": None, "heldout": {}},
                     "subword_mlm": {"pretrain": {"tokens": 655360, "steps": 320, "wall_s": 1700.0,
                                                  "tokens_per_s": {"mean": 390.0}},
                                     "heldout": {"span": {"mlm_loss": 6.91, "sbo_loss": 9.5},
                                                 "subword": {"mlm_loss": 5.1, "sbo_loss": 9.6}}},
                     "span_sbo": {"pretrain": None, "heldout": {}}},
        "runs": runs, "summary": summary, "verdict": report.verdict(checks), "not_run": ["ner:x (not run: deadline)"],
        "wall_s": 100.0, "finished": True, "machine": {"cpu": "test"}, "command": "python bench/pretraining_payoff.py",
    }
    return result


def test_markdown_names_sizes_encoders_and_verdict():
    md = report.render_markdown(_result())
    assert "| MiniLM as shipped | 51.0 ± 1.4 (n=2) | 70.0 (n=1) | 0 | 0 |" in md
    assert "| + span masking + SBO | 52.5 ± 0.7 (n=2) | – (n=0) |" in md
    assert "6.91 / 9.50" in md and "655,360" in md and "(390 tok/s)" in md
    assert "Not run: ner:x" in md and "+1.5 F over 2 seed(s)" in md
    assert "(in progress)" not in md


def test_finished_run_needs_the_last_checkpoint_and_the_same_identity(tmp_path):
    import json

    run = tmp_path / "pretrain"
    (run / "encoder").mkdir(parents=True)
    (run / "encoder" / "model.safetensors").write_bytes(b"x")
    ident = {"init_model": "/m", "max_length": 128, "masking": {"scheme": "span"}, "objective": {"sbo_weight": 1.0},
             "seed": 0, "batch_size": 16, "raw_text": "/t.txt"}
    (run / "meta.json").write_text(json.dumps({"identity": ident}))
    want = {"scheme": "span", "sbo_weight": 1.0, "batch_size": 16, "max_length": 128, "raw_text": "/t.txt",
            "init_model": "/m", "seed": 0}
    assert not bench.finished_run(run, 320, want)  # no final checkpoint: still running or cut short
    (run / "checkpoints" / "step-320").mkdir(parents=True)
    (run / "checkpoints" / "step-320" / "trainer_state.json").write_text(json.dumps({"global_step": 320}))
    assert bench.finished_run(run, 320, want)
    assert not bench.finished_run(run, 320, dict(want, scheme="subword"))
    assert not bench.finished_run(run, 320, dict(want, batch_size=8))


def test_an_interrupted_run_of_the_same_command_is_resumed_not_deleted(tmp_path):
    import json

    run = tmp_path / "pretrain"
    ident = {"init_model": "/m", "max_length": 128, "masking": {"scheme": "span"}, "objective": {"sbo_weight": 1.0},
             "seed": 0, "batch_size": 16, "raw_text": "/t.txt"}
    want = {"scheme": "span", "sbo_weight": 1.0, "batch_size": 16, "max_length": 128, "raw_text": "/t.txt",
            "init_model": "/m", "seed": 0}
    run.mkdir()
    (run / "meta.json").write_text(json.dumps({"identity": ident}))
    saved = ("[training]\nmax_steps = 1465\nlearning_rate = 0.0001\nwarmup_steps = 146\nprecision = \"bf16\"\n"
             "head_lr_factor = 10.0\nmax_grad_norm = 8.0\ngrad_normalization = \"masked_tokens\"\n")
    (run / "config.cfg").write_text(saved)
    args = bench.parse_args(["--pretrain-steps", "1465", "--pretrain-lr", "0.0001", "--precision", "bf16",
                             "--head-lr-factor", "10"])
    schedule = bench.pretrain_schedule(args)
    assert not bench.resumable_run(run, want, schedule)  # no checkpoint yet: nothing to resume from
    (run / "checkpoints" / "step-200").mkdir(parents=True)
    assert bench.resumable_run(run, want, schedule) and not bench.finished_run(run, 1465, want)
    assert not bench.resumable_run(run, dict(want, seed=1), schedule)  # another command's run is never continued
    longer = bench.pretrain_schedule(bench.parse_args(["--pretrain-steps", "3000", "--precision", "bf16",
                                                       "--head-lr-factor", "10"]))
    assert not bench.resumable_run(run, want, longer)  # nor one of another schedule (steps, warmup)
    (run / "config.cfg").write_text(saved.replace("max_grad_norm = 8.0", "max_grad_norm = 1.0"))
    assert not bench.resumable_run(run, want, schedule)  # nor one of another update (the config's clip)
    with pytest.raises(SystemExit):
        bench.parse_args(["--pretrain-save-steps", "0"])


def test_redraw_rewrites_table_and_plot_from_the_json(tmp_path):
    import json

    path = tmp_path / "pretraining_payoff.json"
    path.write_text(json.dumps(_result()))
    report.redraw(path)
    assert "| MiniLM as shipped | 51.0 ± 1.4 (n=2) |" in path.with_suffix(".md").read_text()
    assert path.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(FileNotFoundError, match="run bench/pretraining_payoff.py"):
        report.redraw(tmp_path / "missing.json")


def test_finetunes_run_the_seeded_small_sizes_before_the_single_seed_size():
    order = bench.finetune_order([1, 2, 3], {"2%": 3, "10%": 3, "100%": 1})
    assert order == [(1, "2%"), (1, "10%"), (2, "2%"), (2, "10%"), (3, "2%"), (3, "10%"), (1, "100%")]
    assert bench.finetune_order([1, 2], {"2%": 2}) == [(1, "2%"), (2, "2%")]


def test_clipping_is_summarised_over_the_whole_run_and_plotted(tmp_path):
    """The share of clipped steps weighs each logging window by the steps it covers; a step logged twice (a resumed
    run) counts once, with its later entry."""
    entries = [{"step": 1, "mlm_loss": 10.0, "sbo_loss": 11.0, "grad_norm": 30.0, "grad_norm_max": 30.0,
                "clipped_share": 1.0},
               {"step": 10, "mlm_loss": 9.0, "sbo_loss": 10.0, "grad_norm": 9.0, "grad_norm_max": 20.0,
                "clipped_share": 1.0},
               {"step": 20, "mlm_loss": 8.5, "sbo_loss": 9.0, "grad_norm": 9.9, "grad_norm_max": 9.9,
                "clipped_share": 0.9},  # cut short here, resumed from step 10:
               {"step": 20, "mlm_loss": 8.0, "sbo_loss": 9.0, "grad_norm": 0.8, "grad_norm_max": 1.5,
                "clipped_share": 0.5},
               {"step": 40, "mlm_loss": 7.0, "sbo_loss": 8.0, "grad_norm": 0.6, "grad_norm_max": 0.9,
                "clipped_share": 0.0}, {"step": 40, "train_loss": 8.0}]
    curve = report.training_curve(entries)
    assert [c["step"] for c in curve] == [1, 10, 20, 40] and curve[2]["grad_norm"] == 0.8
    clip = report.clipping_summary(curve, warmup=10, max_norm=1.0)
    assert clip["clipped_share"] == pytest.approx((1 + 9 + 0.5 * 10 + 0) / 40)
    assert clip["norm_after_warmup"]["mean"] == pytest.approx(0.7) and clip["norm_after_warmup_range"] == [0.6, 0.8]
    result = _result()
    result["encoders"]["subword_mlm"]["pretrain"].update(curve=curve, clipping=clip)
    assert "Clipping, + subword MLM (max_grad_norm 1): fired on 38% of 40 steps" in report.render_markdown(result)
    assert report.plot_curves(result, tmp_path / "c.png") and (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert not report.plot_curves(_result(), tmp_path / "none.png")


def test_a_work_dir_in_use_is_refused_in_one_line(tmp_path):
    import os
    import subprocess

    from bench.common import work_dir_lock

    with work_dir_lock(tmp_path):
        assert (tmp_path / "run.pid").read_text().strip() == str(os.getpid())
    assert not (tmp_path / "run.pid").exists()
    other = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "run.pid").write_text(str(other.pid))
        with pytest.raises(ValueError, match=f"in use by another run \\(pid {other.pid}\\)") as err:
            with work_dir_lock(tmp_path):
                pass
        assert "\n" not in str(err.value)
    finally:
        other.kill()
        other.wait()
    with work_dir_lock(tmp_path):  # a lock left by a process that is gone does not block
        pass


def test_a_finished_fine_tune_costs_no_deadline_time_under_reuse(tmp_path, monkeypatch):
    import argparse

    from bench import ner_runs
    from test_ner_runs import _fake_cli

    monkeypatch.setattr(ner_runs, "run_logged", _fake_cli([]))
    corpus = {s: tmp_path / f"{s}.spacy" for s in ("train", "dev", "test")}
    for path in corpus.values():
        path.write_bytes(b"x")
    (tmp_path / "ner.cfg").write_text("[x]\n")
    args = argparse.Namespace(ner_config=tmp_path / "ner.cfg", corpus=corpus, gpu_id=-1, reuse=True, timeout=None)
    size = {"path": str(corpus["train"])}
    run = tmp_path / "run"
    assert not bench.finetune_is_done(args, "enc", size, 120, 1, run)
    bench.finetune_job(args, "enc", size, 120, 1, run, {}, "test")
    assert bench.finetune_is_done(args, "enc", size, 120, 1, run)
    assert not bench.finetune_is_done(args, "enc", size, 200, 1, run)  # another budget is another run
    assert not bench.finetune_is_done(argparse.Namespace(**{**vars(args), "reuse": False}), "enc", size, 120, 1, run)


def test_held_out_scores_are_reused_only_for_the_same_command_and_encoder(tmp_path):
    import json
    import os

    encoder = tmp_path / "encoder"
    encoder.mkdir()
    (encoder / "model.safetensors").write_bytes(b"w")
    out = tmp_path / "heldout_span.json"
    cmd = ["python", "score.py", str(encoder), "--scheme", "span"]
    assert not bench.same_heldout(out, cmd, encoder)  # nothing scored yet
    out.write_text(json.dumps({"mlm_loss": 5.0}))
    out.with_suffix(".command.json").write_text(json.dumps({"command": " ".join(cmd)}))
    assert bench.same_heldout(out, cmd, encoder)
    assert not bench.same_heldout(out, cmd[:-1] + ["subword"], encoder)
    later = out.stat().st_mtime + 10
    os.utime(encoder / "model.safetensors", (later, later))  # pretrained again after the scores were written
    assert not bench.same_heldout(out, cmd, encoder)


def test_a_resumed_run_is_recognised_from_its_logged_command(tmp_path):
    log = tmp_path / "pretrain.log"
    assert not bench.last_start_resumed(log)
    log.write_text("$ python -m spacy spanbert-pretrain cfg out --system.seed 0 --resume\n[step 410] ...\n")
    assert bench.last_start_resumed(log)
    log.write_text("$ python -m spacy spanbert-pretrain cfg out --system.seed 0\n--resume\n")
    assert not bench.last_start_resumed(log)

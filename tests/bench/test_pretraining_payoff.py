"""bench/pretraining_payoff.py: text, subsets, reuse and resume checks, job pool, goal, Markdown and plot."""
import argparse
import json
import os
import subprocess

import pytest

from bench import pretraining_payoff as bench
from bench.common import RunResult, work_dir_lock

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O

Peter NNP B-NP B-PER

-DOCSTART- -X- -X- O

Second NN B-NP O
doc NN I-NP O
"""
SCHEDULE = ("[training]\nmax_steps = 1465\nlearning_rate = 0.0001\nwarmup_steps = 146\nprecision = \"bf16\"\n"
            "head_lr_factor = 10.0\nmax_grad_norm = 8.0\ngrad_normalization = \"masked_tokens\"\n")
IDENTITY = {"init_model": "/m", "max_length": 128, "masking": {"scheme": "span"}, "objective": {"sbo_weight": 1.0},
            "seed": 0, "batch_size": 16, "raw_text": "/t.txt"}


def test_conll_documents_split_at_docstart_with_one_sentence_per_line():
    assert bench.conll_documents(CONLL.splitlines()) == [["EU rejects", "Peter"], ["Second doc"]]


def test_subset_is_fixed_per_size_and_differs_between_sizes():
    a = bench.subset_indices(1000, 2, seed=0)
    assert a == bench.subset_indices(1000, 2, seed=0)  # the same subset for every encoder and fine-tune seed
    assert len(a) == 20 and a == sorted(a) and len(set(a)) == 20
    assert bench.subset_indices(1000, 2, seed=1) != a
    assert len(bench.subset_indices(1000, 10, seed=0)) == 100
    assert len(bench.subset_indices(10, 1, seed=0)) == 1  # at least one
    assert bench.subset_indices(7, 100, seed=0) == list(range(7))


@pytest.mark.parametrize("percent", [0, -5, 150])
def test_subset_rejects_sizes_outside_0_100(percent):
    with pytest.raises(ValueError, match="--sizes"):
        bench.subset_indices(100, percent, seed=0)


def test_steps_must_match_sizes():
    with pytest.raises(SystemExit):
        bench.parse_args(["--sizes", "2", "10", "--steps", "150"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--sizes", "2", "10", "--steps", "150", "250", "--seeds-per-size", "3"])


def _run(f, status="ok"):
    return {"status": status, "f": f, "p": f, "r": f, "train_wall_s": 10.0, "eval_wall_s": 2.0, "per_type": {}}


def _grid():
    return {"2%": {"minilm": [_run(0.50), _run(0.52)], "subword_mlm": [_run(0.515), _run(0.525)],
                   "span_sbo": [_run(0.52), _run(0.53), _run(0.0, "failed")]},
            "10%": {"minilm": [_run(0.70)], "subword_mlm": [_run(0.72)], "span_sbo": []}}


def test_summary_and_goal_use_only_finished_runs():
    summary = bench.summarize_grid(_grid())
    assert summary["2%"]["span_sbo"]["n_ok"] == 2 and summary["2%"]["span_sbo"]["n_failed"] == 1
    assert summary["2%"]["span_sbo"]["f"]["mean"] == pytest.approx(0.525)
    checks = bench.goal_checks(summary)
    assert [c["size"] for c in checks] == ["2%", "2%"]  # 10% has no span_sbo run: not judged
    vs_minilm, vs_subword = checks
    assert vs_minilm["diff_f"] == pytest.approx(0.015) and vs_minilm["met"]  # +1.5 F >= +1.0 F
    assert vs_subword["diff_f"] == pytest.approx(0.005) and vs_subword["met"]
    text = bench.verdict(checks)
    assert "+1.5 F over 2 seed(s) (within seed spread)" in text and "NOT met" not in text


def test_goal_not_met_below_one_point():
    summary = bench.summarize_grid({"2%": {"minilm": [_run(0.50)], "subword_mlm": [_run(0.51)],
                                          "span_sbo": [_run(0.505)]}})
    checks = bench.goal_checks(summary)
    assert [c["met"] for c in checks] == [False, False]
    assert "NOT met, +0.5 F over 1 seed(s)." in bench.verdict(checks)


def test_run_jobs_respects_dependencies_and_failures():
    order, results, skipped, published = [], {}, [], []

    def job(key, status="ok", deps=()):
        def run():
            order.append(key)
            return {"status": status}
        return bench.Job(key, run, lambda rec: results.__setitem__(key, rec["status"]), deps)

    jobs = [job("pre:a"), job("pre:b", status="failed"), job("ft:a", deps=("pre:a",)), job("ft:b", deps=("pre:b",)),
            job("ft:c", deps=("never",))]
    bench.run_jobs(jobs, 1, publish=lambda: published.append(1), skipped=lambda j, why: skipped.append((j.key, why)))
    assert order == ["pre:a", "pre:b", "ft:a"]
    assert results == {"pre:a": "ok", "pre:b": "failed", "ft:a": "ok"}
    assert dict(skipped)["ft:b"].startswith("not run: a job it needs failed")
    assert dict(skipped)["ft:c"] == "not run: a job it needs did not run"  # nothing waits forever
    assert len(published) == 3  # after every finished job


def test_finetunes_run_the_seeded_small_sizes_before_the_single_seed_size():
    order = bench.finetune_order([1, 2, 3], {"2%": 3, "10%": 3, "100%": 1})
    assert order == [(1, "2%"), (1, "10%"), (2, "2%"), (2, "10%"), (3, "2%"), (3, "10%"), (1, "100%")]
    assert bench.finetune_order([1, 2], {"2%": 2}) == [(1, "2%"), (2, "2%")]


def _result():
    runs = _grid()
    summary = bench.summarize_grid(runs)
    return {
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
        "runs": runs, "summary": summary, "verdict": bench.verdict(bench.goal_checks(summary)),
        "not_run": ["ner:x (not run: a job it needs failed)"], "wall_s": 100.0, "finished": True,
        "machine": {"cpu": "test"}, "command": "python bench/pretraining_payoff.py",
    }


def test_markdown_names_sizes_encoders_and_verdict_and_the_plot_is_drawn(tmp_path):
    md = bench.render_markdown(_result())
    assert "| MiniLM as shipped | 51.0 ± 1.4 (n=2) | 70.0 (n=1) | 0 | 0 |" in md
    assert "| + span masking + SBO | 52.5 ± 0.7 (n=2) | – (n=0) | – | – |" in md
    assert "6.91 / 9.50" in md and "655,360" in md and "(390 tok/s)" in md
    assert "Not run: ner:x" in md and "+1.5 F over 2 seed(s)" in md
    assert "(in progress)" not in md
    pytest.importorskip("matplotlib")
    bench.plot(_result(), tmp_path / "payoff.png")
    assert (tmp_path / "payoff.png").read_bytes()[:4] == b"\x89PNG"


def _args(tmp_path, **kw):
    config = tmp_path / "pretrain.cfg"
    config.write_text("[training]\nmax_grad_norm = 8.0\n")
    args = bench.parse_args(["--pretrain-steps", "1465", "--pretrain-lr", "0.0001", "--precision", "bf16",
                             "--head-lr-factor", "10", "--pretrain-config", str(config), "--reuse",
                             "--work-dir", str(tmp_path / "work")])
    return argparse.Namespace(**{**vars(args), **kw})


def test_the_run_identity_and_schedule_decide_what_is_reused(tmp_path):
    args = _args(tmp_path)
    schedule = bench.pretrain_schedule(args)
    assert schedule["max_grad_norm"] == 8.0 and schedule["grad_normalization"] == "masked_tokens"  # schema default
    run = tmp_path / "pretrain"
    run.mkdir()
    want = {"scheme": "span", "sbo_weight": 1.0, "batch_size": 16, "max_length": 128, "raw_text": "/t.txt",
            "init_model": "/m", "seed": 0}
    assert not bench.same_run(run, want, schedule)  # nothing there yet
    (run / "meta.json").write_text(json.dumps({"identity": IDENTITY}))
    (run / "config.cfg").write_text(SCHEDULE)
    assert bench.same_run(run, want, schedule)
    assert not bench.same_run(run, dict(want, scheme="subword"), schedule)
    assert not bench.same_run(run, dict(want, batch_size=8), schedule)
    assert not bench.same_run(run, want, dict(schedule, max_steps=3000))  # another schedule (steps, warmup)
    (run / "config.cfg").write_text(SCHEDULE.replace("max_grad_norm = 8.0", "max_grad_norm = 1.0"))
    assert not bench.same_run(run, want, schedule)  # another update (the config's clip)


def test_pretraining_is_reused_when_finished_resumed_when_cut_short_and_otherwise_started_over(tmp_path, monkeypatch):
    args = _args(tmp_path, pretrain_steps=4)
    run_dir = args.work_dir / "span_sbo" / "pretrain"
    calls = []

    def fake_run(cmd, log, **kw):  # what spanbert-pretrain leaves behind
        calls.append(cmd[-1])
        (run_dir / "encoder").mkdir(parents=True, exist_ok=True)
        (run_dir / "encoder" / "model.safetensors").write_bytes(b"w")
        (run_dir / "checkpoints" / "step-4").mkdir(parents=True, exist_ok=True)
        (run_dir / "checkpoints" / "step-4" / "trainer_state.json").write_text("{}")
        (run_dir / "log.jsonl").write_text('{"step": 2, "tokens_per_s": 100.0}\n{"step": 4, "tokens_per_s": 300.0}\n')
        (run_dir / "meta.json").write_text(json.dumps({"identity": {**IDENTITY, "init_model": "enc",
                                                                     "raw_text": "text.txt"}}))
        (run_dir / "config.cfg").write_text(SCHEDULE.replace("1465", "4").replace("146", "1"))
        return RunResult([str(c) for c in cmd], 0, 1.0, "", str(log))

    monkeypatch.setattr(bench, "run_logged", fake_run)
    first = bench.pretrain_job(args, "span_sbo", "text.txt", "enc", {})
    assert first["status"] == "ok" and not first.get("reused") and calls == ["-1"]
    assert first["tokens"] == 4 * 16 * 128 and first["tokens_per_s"]["mean"] == 200.0
    assert bench.pretrain_job(args, "span_sbo", "text.txt", "enc", {})["reused"] and len(calls) == 1
    (run_dir / "encoder" / "model.safetensors").unlink()  # cut short after a checkpoint
    assert bench.pretrain_job(args, "span_sbo", "text.txt", "enc", {})["resumed"] and calls[-1] == "--resume"
    other = bench.pretrain_job(args, "span_sbo", "text.txt", "another-encoder", {})  # another command: from scratch
    assert calls[-1] == "-1" and not other.get("reused") and not other["resumed"]


def test_held_out_scores_are_reused_only_for_the_same_command_and_encoder(tmp_path, monkeypatch):
    args = _args(tmp_path)
    encoder = args.work_dir / "span_sbo" / "pretrain" / "encoder"
    encoder.mkdir(parents=True)
    (encoder / "model.safetensors").write_bytes(b"w")
    calls = []

    def fake_run(cmd, log, **kw):
        calls.append(cmd)
        out = cmd[cmd.index("--output") + 1]
        out.write_text(json.dumps({"mlm_loss": 5.0, "sbo_loss": 6.0, "n_blocks": 3}))
        return RunResult([str(c) for c in cmd], 0, 1.0, "", str(log))

    monkeypatch.setattr(bench, "run_logged", fake_run)
    assert bench.heldout_job(args, "span_sbo", "span", tmp_path / "h.txt", {})["mlm_loss"] == 5.0 and len(calls) == 1
    assert bench.heldout_job(args, "span_sbo", "span", tmp_path / "h.txt", {})["reused"] and len(calls) == 1
    bench.heldout_job(args, "span_sbo", "subword", tmp_path / "h.txt", {})  # another scheme: another command
    assert len(calls) == 2
    later = (args.work_dir / "span_sbo" / "heldout_span.json").stat().st_mtime + 10
    os.utime(encoder / "model.safetensors", (later, later))  # pretrained again after the scores were written
    assert not bench.heldout_job(args, "span_sbo", "span", tmp_path / "h.txt", {}).get("reused") and len(calls) == 3


def test_a_work_dir_in_use_is_refused_in_one_line(tmp_path):
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


def test_a_run_wires_every_fine_tune_after_its_encoders_pretraining_and_publishes(tmp_path, monkeypatch):
    """run() with the subprocess jobs stood in for: the subsets, the job graph, the result files."""
    from spacy.tokens import Doc, DocBin
    from spacy.vocab import Vocab

    DocBin(docs=[Doc(Vocab(), words=["doc", str(i)]) for i in range(50)]).to_disk(tmp_path / "train.spacy")
    args = _args(tmp_path, sizes=[2.0, 100.0], steps=[10, 20], seeds=[1, 2], seeds_per_size=[2, 1], parallel=2,
                 encoder=str(tmp_path), output=tmp_path / "out" / "payoff.json",
                 corpus={s: tmp_path / "train.spacy" for s in ("train", "dev", "test")})
    done = []
    monkeypatch.setattr(bench, "build_text", lambda args, env: {"pretrain_txt": "p.txt", "heldout_txt": "h.txt"})
    monkeypatch.setattr(bench, "pretrain_job", lambda args, enc, text, encoder, env: done.append(f"pretrain:{enc}")
                        or {"status": "ok" if enc == "span_sbo" else "failed", "error": "x"})
    monkeypatch.setattr(bench, "heldout_job", lambda args, enc, scheme, heldout, env: done.append(f"heldout:{enc}")
                        or {"status": "ok", "mlm_loss": 5.0, "sbo_loss": 6.0})

    def finetune(config, run_dir, corpus, **kw):
        assert f"pretrain:{run_dir.parent.name}" in done or run_dir.parent.name == "minilm"
        done.append(f"ner:{run_dir.parent.name}:{run_dir.name}")
        return {"status": "ok", "f": 0.5 + kw["seed"] / 100, "p": 0.5, "r": 0.5, "train_wall_s": 1.0, "per_type": {}}

    monkeypatch.setattr(bench, "train_and_evaluate", finetune)
    result = bench.run(args, ["--reuse"])
    assert result["finished"] and [k for k in result["subsets"]] == ["2%", "100%"]
    assert result["subsets"]["2%"]["docs"] == 1 and result["subsets"]["100%"]["docs"] == 50
    assert [len(result["runs"][size]["minilm"]) for size in ("2%", "100%")] == [2, 1]
    assert result["runs"]["2%"]["subword_mlm"] == [] and result["runs"]["2%"]["span_sbo"][0]["f"] == 0.51
    assert sorted(result["not_run"])[0].startswith("heldout:subword_mlm:span (not run: a job it needs failed)")
    assert len(result["not_run"]) == 2 + 3  # subword_mlm's held-out scores and fine-tunes
    assert "| + span masking + SBO | 51.5 ± 0.7 (n=2) | 51.0 (n=1) |" in (tmp_path / "out" / "payoff.md").read_text()
    assert json.loads((tmp_path / "out" / "payoff.json").read_text())["finished"] is True

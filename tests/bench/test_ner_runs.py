"""bench/ner_runs.py: a finished fine-tune is reused only for the same inputs, so a cut-short benchmark resumes."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2]))
from bench import ner_runs  # noqa: E402
from bench.common import RunResult  # noqa: E402


def _fake_cli(calls):
    """Stands in for `spacy train` / `spacy evaluate`: writes what they would and counts the calls."""
    def run_logged(cmd, log, **kwargs):
        cmd = [str(c) for c in cmd]
        calls.append(cmd[cmd.index("-m") + 2] if "-m" in cmd else cmd[0])
        if "--output" in cmd:
            out = Path(cmd[cmd.index("--output") + 1])
            if out.suffix == ".json":
                out.write_text(json.dumps({"ents_p": 0.5, "ents_r": 0.5, "ents_f": 0.5, "ents_per_type": {}}))
            else:
                (out / "model-best").mkdir(parents=True, exist_ok=True)
        return RunResult(cmd=cmd, returncode=0, wall_s=1.0, tail="", log_path=str(log))
    return run_logged


def _inputs(tmp_path, monkeypatch):
    """The CLI stood in for (its calls recorded), a config and train/dev/test files with distinct contents."""
    calls = []
    monkeypatch.setattr(ner_runs, "run_logged", _fake_cli(calls))
    config = tmp_path / "ner.cfg"
    config.write_text("[x]\n")
    corpus = {s: tmp_path / f"{s}.spacy" for s in ("train", "dev", "test")}
    for i, path in enumerate(corpus.values()):
        path.write_bytes(bytes([i]))
    return calls, config, corpus


def test_a_finished_run_is_reused_only_for_the_same_inputs(tmp_path, monkeypatch):
    calls, config, corpus = _inputs(tmp_path, monkeypatch)
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    (encoder / "model.safetensors").write_bytes(b"v1")

    def run(**kw):
        return ner_runs.train_and_evaluate(config, tmp_path / "run", corpus, seed=kw.get("seed", 1), max_steps=10,
                                           eval_frequency=10, init_model=str(encoder), reuse=kw.get("reuse", True))

    first = run()
    assert first["f"] == 0.5 and len(calls) == 2 and not first.get("reused")
    assert run()["reused"] and len(calls) == 2  # same inputs: nothing runs again
    assert not run(reuse=False).get("reused") and len(calls) == 4
    assert not run(seed=2).get("reused") and len(calls) == 6  # another seed is another run
    (encoder / "model.safetensors").write_bytes(b"v2, pretrained again")
    assert not run(seed=2).get("reused") and len(calls) == 8  # a re-pretrained encoder makes the old run stale
    corpus["train"].write_bytes(b"another subset")
    assert not run(seed=2).get("reused") and len(calls) == 10


def test_a_torn_or_failed_record_means_run_again(tmp_path, monkeypatch):
    calls, config, corpus = _inputs(tmp_path, monkeypatch)
    run = tmp_path / "run"
    run.mkdir()
    (run / "record.json").write_text('{"status": "ok", "iden')  # killed mid-write by an older version
    record = ner_runs.train_and_evaluate(config, run, corpus, seed=1, max_steps=10, eval_frequency=10, reuse=True)
    assert record["status"] == "ok" and not record.get("reused") and len(calls) == 2
    assert ner_runs.reusable_record(run, record["identity"]) is not None

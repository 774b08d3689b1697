"""scripts/run_pretraining.py: `--resume` reaches spanbert-pretrain only when asked; a new run moves the old aside."""
import subprocess
import sys

import pytest

import run_pretraining


@pytest.fixture
def launched(monkeypatch):
    """The commands main() would run, captured instead of pretraining."""
    commands = []

    def fake_run(cmd, *args, **kwargs):
        commands.append(cmd)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(run_pretraining.subprocess, "run", fake_run)
    return commands


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "pretrain.cfg"
    path.write_text("[paths]\n", encoding="utf8")
    return path


def _old_run(run_dir):
    (run_dir / "encoder").mkdir(parents=True)
    (run_dir / "log.jsonl").write_text("{}\n", encoding="utf8")


def test_new_run_moves_the_earlier_one_aside_and_does_not_resume(tmp_path, config, launched):
    run_dir = tmp_path / "run"
    _old_run(run_dir)
    (tmp_path / "run.previous").mkdir()  # an older run: replaced
    (tmp_path / "run.previous" / "stale").write_text("x")
    assert run_pretraining.main([str(config), str(run_dir), "--resume", "false", "--gpu-id", "-1",
                                 "--training.max_steps", "3"]) == 0
    assert not run_dir.exists()
    assert (tmp_path / "run.previous" / "log.jsonl").exists() and not (tmp_path / "run.previous" / "stale").exists()
    assert launched == [[sys.executable, "-m", "spacy", "spanbert-pretrain", str(config), str(run_dir),
                         "--gpu-id", "-1", "--training.max_steps", "3"]]


def test_resume_keeps_the_run_and_passes_the_flag(tmp_path, config, launched):
    run_dir = tmp_path / "run"
    _old_run(run_dir)
    assert run_pretraining.main([str(config), str(run_dir), "--resume", "True", "--system.seed", "0"]) == 0
    assert (run_dir / "log.jsonl").exists() and not (tmp_path / "run.previous").exists()
    assert launched[0][4:] == [str(config), str(run_dir), "--resume", "--system.seed", "0"]


def test_the_pretraining_exit_code_is_the_scripts(tmp_path, config, monkeypatch):
    monkeypatch.setattr(run_pretraining.subprocess, "run", lambda cmd: subprocess.CompletedProcess(cmd, 3))
    assert run_pretraining.main([str(config), str(tmp_path / "run"), "--resume", "false"]) == 3


def test_bad_input_fails_before_anything_moves(tmp_path, launched, capsys):
    run_dir = tmp_path / "run"
    _old_run(run_dir)
    with pytest.raises(SystemExit, match="config .*missing.cfg not found"):
        run_pretraining.main([str(tmp_path / "missing.cfg"), str(run_dir), "--resume", "false"])
    with pytest.raises(SystemExit):
        run_pretraining.main([str(tmp_path / "missing.cfg"), str(run_dir), "--resume", "maybe"])
    assert "expected true or false, got 'maybe'" in capsys.readouterr().err
    assert (run_dir / "log.jsonl").exists() and launched == []

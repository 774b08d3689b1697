"""Bad input to pretraining ends in one line that names the problem and the fix, before any work starts."""
import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from spacy.util import load_config

from spacy_spanbert.pretraining import checkpoint_io as ckpt
from spacy_spanbert.pretraining.run import pretrain
from spacy_spanbert.pretraining.settings import ObjectiveSettings, TrainingSettings, training_settings
from spacy_spanbert.pretraining.trainer import SpanBertTrainer

ROOT = Path(__file__).parents[2]
CONFIG = ROOT / "configs" / "pretrain.cfg"


def overrides(model, corpus, **extra):
    base = {"paths.raw_text": str(corpus), "paths.init_model": str(model), "training.max_length": 32,
            "training.batch_size": 4, "training.max_steps": 4, "training.save_steps": 2,
            "training.logging_steps": 1, "training.warmup_steps": 1, "training.progress_bar": False}
    return {**base, **extra}


def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_the_schemas_hold_the_defaults_the_shipped_config_shows():
    cfg = load_config(CONFIG, interpolate=False)
    assert TrainingSettings().model_dump() == dict(cfg["training"])
    assert ObjectiveSettings().model_dump() == dict(cfg["objective"])
    assert training_settings({"training": {}}).warmup_steps == 100  # the default a config that omits it gets


@pytest.mark.parametrize("key,value,says", [("max_length", "abc", "whole number"), ("max_length", 4, "greater than or equal to 8"),
                                            ("precision", "fp8", "'fp32'"), ("warmup_step", 3, "not a setting"),
                                            ("learning_rate", -1, "greater than 0")])
def test_a_bad_setting_is_named(tiny_bert_dir, tiny_text_corpus, tmp_path, key, value, says):
    with pytest.raises(ValueError) as err:
        pretrain(CONFIG, tmp_path / "out", overrides(tiny_bert_dir, tiny_text_corpus, **{f"training.{key}": value}))
    assert f"training.{key}" in one_line(err) and says in str(err.value)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_an_init_model_without_tokenizer_files(tiny_bert_dir, tiny_text_corpus, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(tiny_bert_dir, bare)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (bare / name).unlink(missing_ok=True)
    with pytest.raises(ValueError) as err:
        pretrain(CONFIG, tmp_path / "out", overrides(bare, tiny_text_corpus))
    assert "--paths.init_model" in one_line(err) and "no tokenizer files" in str(err.value)
    assert "protobuf" not in str(err.value)


def test_the_output_directory_is_an_existing_file(tiny_bert_dir, tiny_text_corpus, tmp_path):
    target = tmp_path / "out"
    target.write_text("keep me")
    with pytest.raises(ValueError) as err:
        pretrain(CONFIG, target, overrides(tiny_bert_dir, tiny_text_corpus))
    assert "is an existing file" in one_line(err)
    assert target.read_text() == "keep me"


def test_a_non_utf8_corpus_names_the_file(tiny_bert_dir, tmp_path):
    corpus = tmp_path / "latin1.txt"
    corpus.write_bytes("The man saw the dog.\nThe caf\u00e9 was red.\n".encode("latin-1"))
    with pytest.raises(ValueError) as err:
        pretrain(CONFIG, tmp_path / "out", overrides(tiny_bert_dir, corpus))
    assert str(corpus) in one_line(err) and "not UTF-8 (line 2" in str(err.value)


def test_a_failed_start_does_not_block_the_retry(tiny_bert_dir, tiny_text_corpus, tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n   \n")  # passes the size check, then packs no block: the run fails after meta.json
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="no text"):
        pretrain(CONFIG, out, overrides(tiny_bert_dir, blank))
    assert (out / "meta.json").exists() and not ckpt.list_checkpoints(out)
    pretrain(CONFIG, out, overrides(tiny_bert_dir, tiny_text_corpus))  # a different raw_text, not refused
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["step-2", "step-4"]


def test_a_truncated_optimizer_state_is_a_corrupt_checkpoint(tiny_bert_dir, tiny_text_corpus, tmp_path):
    ov = overrides(tiny_bert_dir, tiny_text_corpus, **{"training.max_steps": 2})
    pretrain(CONFIG, tmp_path, ov)
    optimizer = tmp_path / "checkpoints" / "step-2" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[: optimizer.stat().st_size // 2])
    with pytest.raises(ValueError) as err:
        pretrain(CONFIG, tmp_path, {**ov, "training.max_steps": 4}, resume=True)
    assert "step-2 is corrupt" in one_line(err) and "optimizer.pt" in str(err.value) and "delete it" in str(err.value)


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(tiny_bert_dir, tiny_text_corpus, tmp_path,
                                                              monkeypatch):
    original = SpanBertTrainer._save_optimizer_and_scheduler
    calls = []

    def fills_the_disk(self, output_dir):
        calls.append(output_dir)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original(self, output_dir)

    monkeypatch.setattr(SpanBertTrainer, "_save_optimizer_and_scheduler", fills_the_disk)
    with pytest.raises(ckpt.DiskFullError) as err:
        pretrain(CONFIG, tmp_path, overrides(tiny_bert_dir, tiny_text_corpus))
    assert "No space left on device" in one_line(err) and "step-2 is intact" in str(err.value)
    assert "--resume" in str(err.value)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-2"]
    ckpt.validate_checkpoint(tmp_path / "checkpoints" / "step-2")
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))
    monkeypatch.undo()
    pretrain(CONFIG, tmp_path, overrides(tiny_bert_dir, tiny_text_corpus), resume=True)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-2", "step-4"]


def test_the_cli_prints_a_bad_setting_in_one_line(tiny_bert_dir, tiny_text_corpus, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    res = subprocess.run([sys.executable, "-m", "spacy", "spanbert-pretrain", str(CONFIG), str(tmp_path / "out"),
                          "--paths.raw_text", str(tiny_text_corpus), "--paths.init_model", str(tiny_bert_dir),
                          "--training.max_length", "abc"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=240)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        "✘ training.max_length = 'abc' must be a whole number: set it in [training] or pass "
        "--training.max_length VALUE"]

"""The command line: `python -m spacy spanbert-pretrain` errors, and a 2-process gloo DDP run under torchrun."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spacy_spanbert.pretraining import checkpoint_io as ckpt

ROOT = Path(__file__).parents[2]
CONFIG = ROOT / "configs" / "pretrain.cfg"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def run(args, timeout=240):
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def test_spacy_cli_reports_bad_input_in_one_line(tiny_bert_dir, tmp_path):
    res = run(["-m", "spacy", "spanbert-pretrain", str(CONFIG), str(tmp_path / "out"),
               "--paths.raw_text", str(tmp_path / "missing.txt"), "--paths.init_model", str(tiny_bert_dir)])
    assert res.returncode == 1
    lines = [l for l in (res.stdout + res.stderr).splitlines() if "Corpus not found" in l]
    assert len(lines) == 1 and "--paths.raw_text" in lines[0]
    assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_two_gloo_processes_train_and_checkpoint(tiny_bert_dir, tiny_text_corpus, tmp_path):
    out = tmp_path / "ddp"
    res = run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "spacy_spanbert", "pretrain", str(CONFIG), str(out),
               "--paths.raw_text", str(tiny_text_corpus), "--paths.init_model", str(tiny_bert_dir),
               "--training.max_steps", "4", "--training.save_steps", "4", "--training.batch_size", "2",
               "--training.max_length", "32", "--training.logging_steps", "2", "--training.progress_bar", "false"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("Encoder saved to") == 1  # rank 0 reports, rank 1 stays quiet
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["step-4"]
    step = ckpt.validate_checkpoint(out / "checkpoints" / "step-4")
    assert (step / "rng_state_0.pth").exists() and (step / "rng_state_1.pth").exists()
    assert (out / "encoder" / "model.safetensors").exists()
    assert not list((out / "checkpoints").glob(".tmp-*"))

"""End-to-end smoke test of project.yml: every step of `all` after `fetch`, on tiny data and a tiny random BERT.

`fetch` needs the package registry, so the asset vars point at files made here instead (its checksum logic is
tested offline in test_corpus_and_assets.py). The test checks every declared output, the per-type metrics, that a
rerun skips up-to-date steps, and that the packaged wheel installed into this environment `spacy.load`s.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
from weasel.util import load_project_config

from samples import write_conll_docs, write_news_corpus
from spacy_spanbert.cpu import AVX2_EMULATION, has_native_bf16

ROOT = Path(__file__).resolve().parents[2]

PACKAGE = "spanbert_smoke_test"
VARS = {
    "name": PACKAGE,
    "version": "0.0.1",
    "n_dev_docs": 0,
    "max_sents_per_doc": 3,
    "pretrain_max_docs": 0,
    "pretrain_heldout_docs": 2,
    "pretrain_steps": 3,
    "pretrain_batch_size": 2,
    "pretrain_max_length": 32,
    "pretrain_warmup_steps": 1,
    "pretrain_heads_warmup_steps": 1,
    "train_steps": 6,
    "train_batch_words": 200,
    "train_warmup_steps": 2,
    "eval_frequency": 3,
}


def _run(project: Path, command: str, overrides: dict, extra_env: Optional[dict] = None) -> str:
    args = [f"--vars.{key}={value}" for key, value in overrides.items()]
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", **(extra_env or {}))
    result = subprocess.run([sys.executable, "-m", "spacy", "project", "run", command, str(project), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert result.returncode == 0, f"`spacy project run {command}` failed:\n{result.stdout[-4000:]}"
    return result.stdout


def _pip_uninstall(name: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", name],
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.fixture
def project(tmp_path, tiny_bert_dir):
    """A copy of the project (project.yml, scripts, configs; the package linked) with tiny stand-in assets."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "project.yml", project / "project.yml")
    for name in ("scripts", "configs"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "spacy_spanbert").symlink_to(ROOT / "spacy_spanbert")
    conll = project / "data" / "conll"
    conll.mkdir(parents=True)
    for split, n_docs in (("train", 10), ("valid", 3), ("test", 3)):
        write_conll_docs(conll / f"{split}.txt", n_docs, seed=len(split))
    write_news_corpus(project / "data" / "news.txt", n_docs=30)
    return project, {**VARS, "conll_dir": "data/conll", "raw_text": "data/news.txt",
                     "init_model": str(tiny_bert_dir)}


@pytest.mark.parametrize("overrides", [{}, {"raw_text": "other/news.jsonl", "init_model": "/abs/encoder"}])
def test_every_dep_and_output_resolves_to_one_path(overrides):
    # weasel merges a bare "${vars.x}" list item with a following interpolated one into "a, b"
    config = load_project_config(ROOT, overrides={f"vars.{k}": v for k, v in overrides.items()})
    for cmd in config["commands"]:
        for path in cmd.get("deps", []) + cmd.get("outputs", []) + cmd.get("outputs_no_cache", []):
            assert ", " not in path and "${" not in path, f"{cmd['name']}: {path}"
    assert set(config["workflows"]["all"]) <= {cmd["name"] for cmd in config["commands"]}


@pytest.mark.slow
@pytest.mark.parametrize("machine", ["this", "avx2"])
def test_workflow_runs_end_to_end_and_packages(project, machine):
    """The workflow with its default precision settings, on this CPU and on an emulated plain AVX2 one, where
    both pretraining and training must choose float32 (bf16 is emulated there, many times slower)."""
    project_dir, overrides = project
    extra_env = AVX2_EMULATION if machine == "avx2" else {}
    config = load_project_config(project_dir, overrides={f"vars.{k}": v for k, v in overrides.items()})
    commands = {cmd["name"]: cmd for cmd in config["commands"]}
    steps = [step for step in config["workflows"]["all"] if step != "fetch"]
    assert steps == ["precision", "convert", "corpus", "pretrain", "train", "evaluate", "package", "report"]
    try:
        outputs = {step: _run(project_dir, step, overrides, extra_env) for step in steps}
        if machine == "avx2" or not has_native_bf16():
            assert "pretrain: precision auto -> float32" in outputs["precision"]
            assert "train: cpu_bf16 auto -> float32" in outputs["precision"]
            assert "Precision fp32 (auto)" in outputs["pretrain"]
        else:
            assert "Precision bf16 (auto)" in outputs["pretrain"]
        for step in steps:
            for path in commands[step].get("outputs", []) + commands[step].get("outputs_no_cache", []):
                assert (project_dir / path).exists(), f"'{step}' did not write its declared output {path}"
        metrics = json.loads((project_dir / "metrics" / "ner_test.json").read_text(encoding="utf8"))
        assert set(metrics["per_type"]) == {"LOC", "ORG", "PER"}
        assert all(set(scores) == {"p", "r", "f"} for scores in metrics["per_type"].values())
        # the report shows what `spacy evaluate` measured: F is the harmonic mean of P and R, the same three numbers
        evaluated = json.loads((project_dir / "metrics" / "spacy_evaluate_test.json").read_text(encoding="utf8"))
        overall = metrics["overall"]
        assert overall == pytest.approx({key: evaluated[f"ents_{key}"] or 0.0 for key in ("p", "r", "f")})
        harmonic = 2 * overall["p"] * overall["r"] / (overall["p"] + overall["r"]) if overall["p"] + overall["r"] else 0
        assert overall["f"] == pytest.approx(harmonic)
        assert f"test F1: {overall['f']:.4f}" in outputs["report"] and "overall" in outputs["report"]
        # a first run starts new, without `--resume` (which would warn about the empty run directory)
        assert "pretraining/default: new run" in outputs["pretrain"] and "no checkpoint yet" not in outputs["pretrain"]
        heldout = json.loads((project_dir / "metrics" / "pretrain_heldout.json").read_text(encoding="utf8"))
        assert heldout["n_blocks"] > 0 and heldout["mlm_loss"] > 0
        assert "held-out pretraining loss" in outputs["report"]
        check = json.loads((project_dir / "metrics" / "package_check.json").read_text(encoding="utf8"))
        assert check["name"] == f"en_{PACKAGE}" and "spanbert_ner" in check["pipeline"]
        # The installed package loads in a fresh interpreter, independent of the project directory.
        loaded = subprocess.run(
            [sys.executable, "-c", f"import spacy; print(spacy.load('en_{PACKAGE}').pipe_names)"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(ROOT))
        assert loaded.returncode == 0 and "spanbert_ner" in loaded.stdout, loaded.stdout[-2000:]
        # deps and outputs are complete enough for weasel to skip up-to-date steps
        for step in ("convert", "corpus", "evaluate"):
            assert f"Skipping '{step}': nothing changed" in _run(project_dir, step, overrides, extra_env)
    finally:
        _pip_uninstall(f"en_{PACKAGE}")

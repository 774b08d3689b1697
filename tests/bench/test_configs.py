"""The baseline configs load and validate, and trf_ner.cfg differs from configs/ner.cfg only in the NER head."""
from pathlib import Path

import pytest
from spacy import util
from spacy.cli._util import parse_config_overrides

from bench import ner_runs

ROOT = Path(__file__).resolve().parents[2]
BASELINES = ROOT / "bench" / "configs"
NER_CFG = ROOT / "configs" / "ner.cfg"  # the spanbert_ner config every baseline mirrors
SHARED_TRAINING = ["max_steps", "eval_frequency", "dropout", "accumulate_gradient", "patience", "max_epochs",
                   "batcher", "optimizer"]


def _load(path, **overrides):
    return util.load_config(path, overrides={"paths.init_model": "unused-encoder", **overrides}, interpolate=False)


@pytest.mark.parametrize("name,pipeline", [("trf_ner.cfg", ["transformer", "ner"]), ("cnn_ner.cfg", ["tok2vec", "ner"])])
def test_baseline_config_builds_a_pipeline(name, pipeline):
    nlp = util.load_model_from_config(_load(BASELINES / name), auto_fill=True, validate=True)
    assert nlp.pipe_names == pipeline
    # the baselines' ner listens to the encoder named in the config: spacy-transformers' or spaCy's CNN
    listener = {"transformer": "TransformerListener", "tok2vec": "Tok2VecListener"}[pipeline[0]]
    assert nlp.config["components"]["ner"]["model"]["tok2vec"]["@architectures"].split(".")[1] == listener


@pytest.mark.parametrize("path", [BASELINES / "trf_ner.cfg", BASELINES / "cnn_ner.cfg", NER_CFG])
def test_the_benchmarks_step_budget_reaches_the_schedule(path):
    """The budget every benchmark run gets must also end the warmup_linear decay, or short runs never cool down."""
    overrides = parse_config_overrides(ner_runs.budget_overrides(37, 10))
    config = util.load_config(path, overrides={"paths.init_model": "unused-encoder", **overrides}, interpolate=True)
    assert config["training"]["max_steps"] == 37 and config["training"]["eval_frequency"] == 10
    assert config["training"]["optimizer"]["learn_rate"]["total_steps"] == 37


def test_trf_baseline_mirrors_the_spanbert_ner_config():
    ours = _load(NER_CFG, **{"training.max_steps": 37}).interpolate()
    base = _load(BASELINES / "trf_ner.cfg", **{"training.max_steps": 37}).interpolate()
    for key in SHARED_TRAINING:
        assert base["training"][key] == ours["training"][key], f"[training] {key} differs from configs/ner.cfg"
    ours_trf = dict(ours["components"]["transformer"]["model"])
    base_trf = dict(base["components"]["transformer"]["model"])
    assert base_trf.pop("@architectures") == "spacy-transformers.TransformerModel.v3"
    ours_trf.pop("@architectures")
    assert ours_trf.pop("case_types") is True  # ours only: capitalisation as token types (MiniLM is uncased)
    assert ours_trf.pop("quantize") is None and ours_trf.pop("cpu_bf16") is False
    assert base_trf == ours_trf  # same encoder name, windows, tokenizer and precision settings
    assert base["nlp"]["batch_size"] == ours["nlp"]["batch_size"]


def test_cnn_floor_shares_the_training_budget():
    ours = _load(NER_CFG).interpolate()["training"]
    cnn = _load(BASELINES / "cnn_ner.cfg").interpolate()["training"]
    for key in ("max_steps", "eval_frequency", "batcher", "patience"):
        assert cnn[key] == ours[key], f"[training] {key} differs from configs/ner.cfg"
    ours_lr, cnn_lr = dict(ours["optimizer"]["learn_rate"]), dict(cnn["optimizer"]["learn_rate"])
    assert cnn_lr.pop("initial_rate") == 0.001  # the CNN's own default peak rate; the schedule is the same
    ours_lr.pop("initial_rate")
    assert cnn_lr == ours_lr


def test_accuracy_runs_get_the_system_overrides_the_warmup_and_reuse(monkeypatch, tmp_path):
    """What each run of bench/accuracy.py receives: the system's own overrides, then --warmup-steps, and --reuse."""
    from bench import accuracy

    seen = []
    monkeypatch.setattr(accuracy, "train_and_evaluate",
                        lambda *a, **kw: seen.append(kw) or {"seed": kw["seed"], "status": "failed", "error": "x"})
    args = accuracy.parse_args(["--systems", "spanbert_ner_amp", "--seeds", "4", "--max-steps", "10", "--reuse",
                                "--warmup-steps", "2", "--work-dir", str(tmp_path)])
    result = accuracy.run_system("spanbert_ner_amp", args, {}, "encoder")
    assert len(seen) == 1 and seen[0]["seed"] == 4 and seen[0]["reuse"] is True and seen[0]["init_model"] == "encoder"
    assert seen[0]["overrides"] == [*accuracy.SYSTEMS["spanbert_ner_amp"]["overrides"],
                                    "--training.optimizer.learn_rate.warmup_steps", "2"]
    assert result["status"] == "failed" and result["reason"] == "x"

"""bench/textcat.py: the --quick run trains and scores every system (ours also after int8 quantization); the baseline
configs mirror configs/textcat.cfg and pass `spacy debug config/data`; a missing BBC folder is one line."""
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy import util
from spacy.cli.debug_config import debug_config
from spacy.cli.debug_data import debug_data
from spacy.tokens import DocBin

from bench import textcat
from spacy_spanbert.models.transformer import encoder_of
from tests.fixtures.tiny_bert import ADJECTIVES, DETERMINERS, VERBS

ROOT = Path(__file__).resolve().parents[2]
OURS = ROOT / "configs" / "textcat.cfg"
BASELINES = [ROOT / "bench" / "configs" / "trf_textcat.cfg", ROOT / "bench" / "configs" / "cnn_textcat.cfg"]
# synthetic topics from the tiny BERT's vocabulary: every topic's articles repeat its own three nouns
TOPICS = {"business": "bank market company", "politics": "president government minister", "sport": "team game year",
          "tech": "car ship road", "entertainment": "book letter garden"}


def write_bbc(folder: Path, per_topic: int = 10, seed: int = 0) -> Path:
    """A BBC-like folder (<topic>/*.txt) of short synthetic articles."""
    rng = random.Random(seed)
    for topic, nouns in TOPICS.items():
        (folder / topic).mkdir(parents=True, exist_ok=True)
        for i in range(per_topic):
            sents = [f"{rng.choice(DETERMINERS)} {rng.choice(ADJECTIVES)} {rng.choice(nouns.split())} "
                     f"{rng.choice(VERBS)} the {rng.choice(nouns.split())}." for _ in range(8)]
            (folder / topic / f"{i:03d}.txt").write_text(" ".join(sents).capitalize() + "\n", encoding="utf8")
    return folder


@pytest.mark.slow
def test_quick_run_scores_every_system(tmp_path, tiny_bert_dir, monkeypatch):
    # as on a CPU with bfloat16 instructions, where ours is also scored in float32, the precision int8 is compared to
    monkeypatch.setattr(textcat, "has_native_bf16", lambda: True)
    out = tmp_path / "textcat.json"
    textcat.main(["--quick", "--bbc-dir", str(write_bbc(tmp_path / "bbc")), "--encoder", str(tiny_bert_dir),
                  "--work-dir", str(tmp_path / "work"), "--output", str(out), "--threads", "1"])
    result = json.loads(out.read_text())
    assert list(result["systems"]) == ["spanbert_textcat", "spanbert_textcat_fp32", "spanbert_textcat_int8",
                                       "trf_textcat", "cnn_textcat"]
    assert result["settings"]["split"]["test"] == {topic: 1 for topic in sorted(TOPICS)}
    for name, system in result["systems"].items():
        (run,) = system["runs"]
        assert run["status"] == "ok", (name, run.get("error"))
        assert sorted(run["per_class_f"]) == sorted(TOPICS)
        assert 0.0 <= run["accuracy"] <= 1.0 and run["words_per_s"] > 0
        # spaCy's macro F is the mean of the per-class F
        assert run["macro_f"] == pytest.approx(sum(run["per_class_f"].values()) / len(run["per_class_f"]))
        assert system["summary"]["n_ok"] == 1
        # the misclassified articles are listed, and with one seed every one of them is missed by every seed
        assert run["accuracy"] == pytest.approx(1 - len(run["errors"]) / len(TOPICS))
        assert all(e["gold"] != e["predicted"] and e["gold"] in TOPICS for e in run["errors"])
        assert system["summary"]["missed_by_every_seed"] == run["errors"]
    int8 = result["systems"]["spanbert_textcat_int8"]["runs"][0]["model"]
    assert util.load_config(Path(int8) / "config.cfg")["components"]["transformer"]["model"]["quantize"] == "int8"
    ours = util.load_config(Path(result["systems"]["spanbert_textcat"]["runs"][0]["model"]) / "config.cfg")
    assert ours["training"]["max_steps"] == result["settings"]["max_steps"] == 6
    assert ours["components"]["transformer"]["model"]["@architectures"] == "spacy-spanbert.SpanBERT.v4"
    markdown = out.with_suffix(".md").read_text()
    assert "QUICK" in markdown and "ours, int8" in markdown and "Machine:" in markdown
    assert "| ours, float32 (cpu_bf16 = false) |" in markdown and "int8 / float32 words/s (ours): " in markdown
    # the float32 row really is ours loaded in float32, whatever "auto" chooses on this CPU
    fp32 = spacy.load(result["systems"]["spanbert_textcat_fp32"]["runs"][0]["model"], config=textcat.FLOAT32)
    assert encoder_of(fp32.get_pipe("transformer").model).cpu_bf16 is False
    assert fp32.config["components"]["transformer"]["model"]["cpu_bf16"] is False
    assert "| textcat on SpanBERT (ours) |" in markdown
    if result["systems"]["spanbert_textcat"]["runs"][0]["errors"]:
        assert "Missed by every seed, textcat on SpanBERT (ours): " in markdown

    # --reuse: the same pipelines scored again without training (what a run on another CPU does): same predictions
    again = tmp_path / "reused.json"
    textcat.main(["--quick", "--reuse", "--bbc-dir", str(tmp_path / "bbc"), "--systems", "spanbert_textcat",
                  "--work-dir", str(tmp_path / "work"), "--output", str(again), "--threads", "1"])
    reused = json.loads(again.read_text())
    (first,), (second,) = result["systems"]["spanbert_textcat"]["runs"], reused["systems"]["spanbert_textcat"]["runs"]
    assert second["model"] == first["model"] and second["train_wall_s"] is None
    assert second["per_class_f"] == pytest.approx(first["per_class_f"])
    assert reused["systems"]["spanbert_textcat_int8"]["runs"][0]["status"] == "ok"
    assert "(not retrained)" in again.with_suffix(".md").read_text()


def test_missed_by_every_seed_keeps_only_the_articles_all_runs_got_wrong():
    def error(i):
        return {"index": i, "gold": "tech", "predicted": "business", "title": f"article {i}"}

    runs = [{"errors": [error(1), error(2)]}, {"errors": [error(2), error(3)]}, {"errors": [error(0), error(2)]}]
    assert textcat.missed_by_all(runs) == [error(2)]
    assert textcat.missed_by_all([{"errors": [error(1)]}, {"errors": []}]) == []


def test_int8_is_compared_with_float32_over_the_seeds_both_scored():
    def system(speeds):
        return {"runs": [{"seed": seed, "status": "ok" if wps else "failed", "words_per_s": wps}
                         for seed, wps in speeds.items()]}

    result = {"systems": {"spanbert_textcat": system({1: 900.0, 2: 900.0}),
                          "spanbert_textcat_fp32": system({1: 100.0, 2: 300.0}),
                          "spanbert_textcat_int8": system({1: 150.0, 2: None})}}
    # the float32 row, not ours in bfloat16; seed 2's int8 failed, so only seed 1 counts
    assert textcat.int8_line(result) == ["int8 / float32 words/s (ours): 1.50x.", ""]
    del result["systems"]["spanbert_textcat_fp32"]
    assert textcat.int8_line(result) == ["int8 / float32 words/s (ours): 0.17x.", ""]


def test_missing_bbc_folder_is_one_line_before_any_training(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "textcat.py"), "--bbc-dir", str(tmp_path / "nope"),
                           "--systems", "cnn_textcat", "--work-dir", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "BBC folder not found" in done.stderr and "fetch_assets.py" in done.stderr
    assert not (tmp_path / "work" / "cnn_textcat").exists()


def test_reuse_without_an_earlier_run_is_one_line_before_any_work(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "textcat.py"), "--reuse", "--bbc-dir",
                           str(write_bbc(tmp_path / "bbc", per_topic=2)), "--systems", "cnn_textcat",
                           "--work-dir", str(tmp_path / "work")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--reuse: " in done.stderr and "model-best not found" in done.stderr
    assert "run without --reuse" in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "work").exists()


def test_reuse_refuses_training_settings_it_would_not_use(tmp_path, capsys):
    """--reuse reports the budget the pipelines were trained with: a budget on the command line is an error, not a
    label the report would carry."""
    with pytest.raises(SystemExit):
        textcat.parse_args(["--reuse", "--max-steps", "300", "--dev-docs", "60", "--work-dir", str(tmp_path)])
    assert "drop --max-steps --dev-docs" in capsys.readouterr().err


def test_trf_baseline_mirrors_ours():
    ours = util.load_config(OURS, overrides={"paths.init_model": "x"}).interpolate()
    base = util.load_config(BASELINES[0], overrides={"paths.init_model": "x"}).interpolate()
    assert base["training"] == ours["training"] and base["nlp"] == ours["nlp"]
    assert base["components"]["textcat"] == ours["components"]["textcat"]
    ours_trf = dict(ours["components"]["transformer"]["model"])
    base_trf = dict(base["components"]["transformer"]["model"])
    assert base_trf.pop("@architectures") == "spacy-transformers.TransformerModel.v3"
    assert ours_trf.pop("@architectures") == "spacy-spanbert.SpanBERT.v4"
    assert (ours_trf.pop("case_types"), ours_trf.pop("quantize"), ours_trf.pop("cpu_bf16")) == (True, None, "auto")
    assert base_trf == ours_trf
    cnn = util.load_config(BASELINES[1]).interpolate()
    assert cnn["components"]["textcat"]["model"]["@architectures"] == "spacy.TextCatEnsemble.v2"
    assert cnn["components"]["textcat"]["model"]["tok2vec"]["@architectures"] == "spacy.Tok2Vec.v2"
    for key in ("max_steps", "eval_frequency", "batcher", "score_weights"):
        assert cnn["training"][key] == ours["training"][key]


@pytest.mark.parametrize("config", BASELINES, ids=lambda p: p.name)
def test_baselines_pass_spacy_debug_config_and_data(config, tmp_path, tiny_bert_dir):
    nlp = spacy.blank("en")
    db = DocBin()
    for i in range(120):
        label = ["sport", "tech"][i % 2]
        doc = nlp.make_doc(f"the {'team game' if label == 'sport' else 'car ship'} number {i}")
        doc.cats = {"sport": float(label == "sport"), "tech": float(label == "tech")}
        db.add(doc)
    db.to_disk(tmp_path / "train.spacy")
    overrides = {"paths.train": str(tmp_path / "train.spacy"), "paths.dev": str(tmp_path / "train.spacy"),
                 "paths.init_model": str(tiny_bert_dir)}
    debug_config(config, overrides=overrides)
    try:
        debug_data(config, config_overrides=overrides, silent=True)
    except SystemExit as exit_:
        pytest.fail(f"spacy debug data {config.name} found errors (exit {exit_.code})")

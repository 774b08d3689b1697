"""Calibration (ner: temperature; spancat: per-label Platt scaling): fitting, serialisation, unchanged entities,
load-time threshold, the CLI and its errors."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.tokens import DocBin
from span_helpers import component_config, ents, ner_examples, train

from spacy_spanbert.cli.calibrate import run_calibrate
from spacy_spanbert.pipeline.calibration import (
    LOG_T_RANGE, CalibrationData, calibrate, decoded_nll, expected_calibration_error, fit_label_platt, fit_platt,
    golden_section, reliability_bins,
)

ROOT = Path(__file__).parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
# held-out sentences: the tiny model trained on NER_DATA gets some right and some wrong, so T has something to fit
DEV_DATA = [
    ("Peter saw the dog in Paris .", [(0, 5, "PER"), (21, 26, "LOC")]),
    ("Anna liked London and Google .", [(0, 4, "PER"), (11, 17, "LOC"), (22, 28, "ORG")]),
    ("The king met John in Berlin .", [(13, 17, "PER"), (21, 27, "LOC")]),
    ("Reuters saw Mary .", [(0, 7, "ORG"), (12, 16, "PER")]),
    ("Smith liked the big city .", [(0, 5, "PER")]),
]
TEXTS = [text for text, _ in DEV_DATA] + ["John saw the big dog in London .", "Mary liked Paris and Berlin ."]


@pytest.fixture(scope="module")
def trained_ner(tiny_bert_dir, tmp_path_factory):
    """A tiny spanbert_ner trained on NER_DATA, saved; RETURNS (pipeline dir, dev .spacy path)."""
    nlp = spacy.blank("en")
    nlp.add_pipe("spanbert_ner", config=component_config(tiny_bert_dir))
    train(nlp, ner_examples(nlp), steps=60)
    out = tmp_path_factory.mktemp("calibration")
    nlp.to_disk(out / "model")
    dev = DocBin(docs=[eg.reference for eg in ner_examples(nlp, DEV_DATA)])
    dev.to_disk(out / "dev.spacy")
    return out / "model", out / "dev.spacy"


def _entities_and_scores(nlp):
    docs = list(nlp.pipe(TEXTS))
    return [ents(doc) for doc in docs], [list(doc.spans["spanbert_ents"].attrs["scores"]) for doc in docs]


def _sigmoid(x):
    return 1.0 / (1.0 + numpy.exp(-x))


@pytest.mark.parametrize("a,b", [(1.6, -0.8), (0.4, 1.2), (3.0, 0.0)])
def test_platt_recovers_known_a_and_b(a, b):
    # labels drawn from sigmoid(a * z + b): over-confident (a < 1), under-confident (a > 1), shifted (b != 0)
    rng = numpy.random.default_rng(1)
    logits = rng.normal(0.0, 3.0, size=40000).astype("f")
    gold = (rng.random(40000) < _sigmoid(a * logits + b)).astype("f")
    fitted_a, fitted_b = fit_platt(logits, gold)
    assert fitted_a == pytest.approx(a, rel=0.05) and fitted_b == pytest.approx(b, abs=0.06)


def test_platt_is_fitted_on_the_pairs_above_the_floor():
    # above a raw score of 0.01 the labels follow sigmoid(1.5 z - 1); below it a mass of easy negatives that the
    # raw scores already get right would pull an unfloored fit back towards the identity
    rng = numpy.random.default_rng(2)
    high = rng.uniform(-4.0, 5.0, size=20000)
    easy = rng.uniform(-14.0, -5.0, size=400000)
    logits = numpy.concatenate([high, easy]).astype("f")[:, None]
    gold = numpy.concatenate([rng.random(20000) < _sigmoid(1.5 * high - 1.0), rng.random(400000) < _sigmoid(easy)])
    data = CalibrationData(logits=logits, gold_class=numpy.zeros(0, int), gold_multi=gold.astype("f")[:, None])
    (t,), (b,) = fit_label_platt(data, floor=0.01)
    assert 1 / t == pytest.approx(1.5, rel=0.05) and b == pytest.approx(-1.0, abs=0.08)
    (t_all,), (b_all,) = fit_label_platt(data, floor=1e-9)
    assert 1 / t_all < 1.25  # the easy negatives dominate a fit on every pair: its slope stays near the identity
    # a label with no positive among its fitted pairs is left alone
    data.gold_multi[:] = 0.0
    assert fit_label_platt(data) == ([1.0], [0.0])


def test_fit_recovers_a_known_temperature():
    rng = numpy.random.default_rng(0)
    # softmax, decoded entities: the winner is right with probability softmax(z / 0.5), an UNDER-confident model
    z = rng.normal(0.0, 1.0, size=(20000, 5)).astype("f")
    p = numpy.exp(z / 0.5) / numpy.exp(z / 0.5).sum(axis=1, keepdims=True)
    data = CalibrationData(logits=z, gold_class=numpy.zeros(0, int), gold_multi=numpy.zeros((0, 4), "f"),
                           decoded=numpy.arange(20000), decoded_correct=rng.random(20000) < p.max(axis=1))
    t = math.exp(golden_section(lambda lt: decoded_nll(data, math.exp(lt)), *LOG_T_RANGE))
    assert t == pytest.approx(0.5, rel=0.1)
    assert decoded_nll(data, t) < decoded_nll(data, 1.0)


def test_ece_is_the_weighted_gap_between_confidence_and_accuracy():
    right = numpy.array([True] * 8 + [False] * 2)
    assert expected_calibration_error(numpy.full(10, 0.8), right) == pytest.approx(0.0)
    # two bins: 0.95 confident and 50% right (gap 0.45), 0.25 confident and 25% right (gap 0): ECE = 0.45 * 2/6
    conf = numpy.array([0.95, 0.95, 0.25, 0.25, 0.25, 0.25])
    right = numpy.array([True, False, True, False, False, False])
    assert expected_calibration_error(conf, right) == pytest.approx(0.45 * 2 / 6)
    bins = reliability_bins(conf, right)
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 6 and bins[14]["accuracy"] == 0.5


def test_calibrate_stores_temperature_and_leaves_entities_unchanged(trained_ner, tmp_path):
    model_dir, dev_path = trained_ner
    nlp = spacy.load(model_dir)
    before_ents, before_scores = _entities_and_scores(nlp)
    assert any(before_ents), "the tiny model should predict entities on the dev texts"
    examples = list(spacy.training.Corpus(dev_path)(nlp))
    result = calibrate(nlp, examples)
    pipe = nlp.get_pipe("spanbert_ner")
    assert isinstance(result["temperature"], float) and pipe.cfg["temperature"] == result["temperature"]
    assert result["temperature"] != 1.0 and result["nll_after"] < result["nll_before"]
    # the reported ECE is the one of the scores the calibrated pipeline now writes on the dev docs
    written, correct = [], []
    for eg, doc in zip(examples, nlp.pipe([eg.predicted.copy() for eg in examples])):
        gold = {(e.start, e.end, e.label_) for e in eg.reference.ents}
        written += [e._.spanbert_score for e in doc.ents]
        correct += [(e.start, e.end, e.label_) in gold for e in doc.ents]
    assert result["ece_after"] == pytest.approx(
        expected_calibration_error(numpy.array(written), numpy.array(correct)), abs=1e-5)
    for temperature in (result["temperature"], 0.3, 5.0):  # a scalar never changes the entities, only the scores
        pipe.cfg["temperature"] = temperature
        after_ents, after_scores = _entities_and_scores(nlp)
        assert after_ents == before_ents
        assert not numpy.allclose(sum(after_scores, []), sum(before_scores, []))
    pipe.cfg["temperature"] = result["temperature"]
    _, calibrated = _entities_and_scores(nlp)

    nlp.to_disk(tmp_path / "calibrated")
    loaded = spacy.load(tmp_path / "calibrated")
    assert loaded.get_pipe("spanbert_ner").cfg["temperature"] == pytest.approx(result["temperature"], rel=1e-12)
    numpy.testing.assert_allclose(sum(_entities_and_scores(loaded)[1], []), sum(calibrated, []), rtol=1e-5)
    fresh = spacy.load(model_dir)
    fresh.from_bytes(nlp.to_bytes())
    assert fresh.get_pipe("spanbert_ner").cfg["temperature"] == pytest.approx(result["temperature"], rel=1e-12)
    numpy.testing.assert_allclose(sum(_entities_and_scores(fresh)[1], []), sum(calibrated, []), rtol=1e-5)


def test_load_time_threshold_filters_calibrated_scores(trained_ner, tmp_path):
    model_dir, dev_path = trained_ner
    run_calibrate(model_dir, dev_path, tmp_path / "calibrated")
    all_ents, all_scores = _entities_and_scores(spacy.load(tmp_path / "calibrated"))
    flat = sorted(s for scores in all_scores for s in scores)
    assert len(flat) >= 2 and flat[0] < flat[-1]
    cut = (flat[0] + flat[-1]) / 2
    strict = spacy.load(tmp_path / "calibrated", config={"components": {"spanbert_ner": {"threshold": cut}}})
    pipe = strict.get_pipe("spanbert_ner")
    assert pipe.cfg["threshold"] == cut and pipe.cfg["temperature"] != 1.0  # runtime setting + saved calibration
    kept_ents, kept_scores = _entities_and_scores(strict)
    expected = [[e for e, s in zip(doc_ents, scores) if s >= cut] for doc_ents, scores in zip(all_ents, all_scores)]
    assert kept_ents == expected and all(s >= cut for scores in kept_scores for s in scores)
    assert sum(map(len, kept_ents)) < sum(map(len, all_ents))


@pytest.fixture(scope="module")
def trained_spancat(tiny_bert_dir, tmp_path_factory):
    """A tiny spanbert_spancat trained briefly (so its scores have something to calibrate), saved; RETURNS
    (pipeline dir, its examples, texts)."""
    from test_span_spancat import SPANCAT_DATA, make_examples

    nlp = spacy.blank("en")
    # the head at the encoder's learning rate: 30 steps then leave wrong-ish scores on the training data to calibrate
    nlp.add_pipe("spanbert_spancat", config=component_config(tiny_bert_dir, head_learn_rate_factor=1.0))
    examples = make_examples(nlp)
    train(nlp, examples, steps=30)
    out = tmp_path_factory.mktemp("calibration_spancat") / "model"
    nlp.to_disk(out)
    return out, examples, [text for text, _ in SPANCAT_DATA]


def _pairs(nlp, texts):
    """{(doc index, start, end, label): score} of every (span, label) pair the spancat writes."""
    pairs = {}
    for i, doc in enumerate(nlp.pipe(texts)):
        group = doc.spans["sc"]
        pairs.update({(i, s.start, s.end, s.label_): score for s, score in zip(group, group.attrs["scores"])})
    return pairs


def test_spancat_platt_is_saved_loaded_and_thresholded(trained_spancat, tmp_path):
    model_dir, examples, texts = trained_spancat
    nlp = spacy.load(model_dir)
    result = calibrate(nlp, examples)
    pipe = nlp.get_pipe("spanbert_spancat")
    temperature, bias = result["temperature"], result["calibration_bias"]
    assert len(temperature) == len(bias) == len(pipe.labels)
    assert pipe.cfg["temperature"] == temperature and pipe.cfg["calibration_bias"] == bias
    assert any(b != 0.0 for b in bias) and result["nll_after"] < result["nll_before"]
    nlp.to_disk(tmp_path / "calibrated")

    # every candidate pair (threshold 0): the loaded pipeline writes sigmoid(raw logit / T + b) per label
    every = {"components": {"spanbert_spancat": {"threshold": 0.0}}}
    raw = _pairs(spacy.load(model_dir, config=every), texts)
    loaded = spacy.load(tmp_path / "calibrated", config=every)
    saved = loaded.get_pipe("spanbert_spancat").cfg  # spaCy's cfg JSON keeps ~15 significant digits
    assert saved["calibration_bias"] == pytest.approx(bias, rel=1e-12)
    assert saved["temperature"] == pytest.approx(temperature, rel=1e-12)
    calibrated = _pairs(loaded, texts)
    assert calibrated.keys() == raw.keys()
    column = {label: k for k, label in enumerate(pipe.labels)}
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    expected = {key: _sigmoid(logit(p) / temperature[column[key[3]]] + bias[column[key[3]]]) for key, p in raw.items()}
    numpy.testing.assert_allclose([calibrated[k] for k in raw], [expected[k] for k in raw], rtol=1e-4, atol=1e-6)

    # a load-time threshold keeps exactly the pairs whose CALIBRATED score reaches it
    cut = float(numpy.median(list(calibrated.values())))
    strict = spacy.load(tmp_path / "calibrated", config={"components": {"spanbert_spancat": {"threshold": cut}}})
    assert strict.get_pipe("spanbert_spancat").cfg["calibration_bias"] == pytest.approx(bias, rel=1e-12)
    kept = _pairs(strict, texts)
    assert kept.keys() == {key for key, p in calibrated.items() if p >= cut} and 0 < len(kept) < len(calibrated)


def test_calibrating_twice_fits_from_the_raw_logits(trained_spancat):
    model_dir, examples, _ = trained_spancat
    nlp = spacy.load(model_dir)
    first = calibrate(nlp, examples)
    second = calibrate(nlp, examples)  # a calibrated pipeline refitted: the same map, not one stacked on the other
    assert second["temperature"] == first["temperature"] and second["calibration_bias"] == first["calibration_bias"]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "spacy", "spanbert-calibrate", *map(str, args)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # subprocesses or a long end-to-end run: CI runs it, the quick loop skips it
def test_cli_writes_a_loadable_calibrated_pipeline(trained_ner, tmp_path):
    model_dir, dev_path = trained_ner
    res = _cli(model_dir, dev_path, tmp_path / "out")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "temperature" in res.stdout
    loaded = spacy.load(tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    temperature = meta["spanbert_calibration"]["spanbert_ner"]["temperature"]
    # saved floats come back within a rounding of the JSON text, which depends on the fitted value (and the CPU)
    assert loaded.get_pipe("spanbert_ner").cfg["temperature"] == pytest.approx(temperature, rel=1e-12) and temperature != 1.0
    # the saved pipeline writes the calibrated scores: the raw ones at T = 1 differ, the entities do not
    text = "Peter saw the dog in Paris ."
    calibrated = loaded(text)
    loaded.get_pipe("spanbert_ner").cfg["temperature"] = 1.0
    raw = loaded(text)
    assert ents(calibrated) == ents(raw)
    if calibrated.ents:
        assert calibrated.spans["spanbert_ents"].attrs["scores"] != raw.spans["spanbert_ents"].attrs["scores"]


@pytest.mark.slow  # subprocesses or a long end-to-end run: CI runs it, the quick loop skips it
def test_cli_bad_input_is_one_line_naming_the_fix(trained_ner, tmp_path):
    model_dir, dev_path = trained_ner
    nlp = spacy.blank("en")
    empty = tmp_path / "no_entities.spacy"
    DocBin(docs=[nlp("Peter saw the dog ."), nlp("No names here .")]).to_disk(empty)
    cases = [
        ((model_dir, tmp_path / "missing.spacy", tmp_path / "o1"), "dev data not found", "spacy project run convert"),
        ((model_dir, dev_path, tmp_path / "o2", "--component", "ner"), "'ner' is not in the pipeline",
         "--component with one of: spanbert_ner"),
        ((model_dir, empty, tmp_path / "o3"), "no gold spans in doc.ents", "labelled dev data"),
        ((model_dir, dev_path, tmp_path / "o4", "--platt-floor", "1.5"), "--platt-floor must be a score in (0, 1)",
         "e.g. 0.01"),
    ]
    for args, problem, fix in cases:
        res = _cli(*args)
        assert res.returncode == 1
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and problem in lines[0] and fix in lines[0], res.stderr[-2000:]
        assert not args[2].exists()  # raised before anything was written

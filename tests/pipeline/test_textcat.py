"""spaCy's `textcat` listening to the SpanBERT.v4 transformer (configs/textcat.cfg): it learns a few docs, saves,
loads and quantizes; a document longer than one window is classified from every window; the textcat configs pass
`spacy debug config` and `spacy debug data`.

The configs' windows (128 tokens) are longer than the tiny BERT's 128 positions allow, so the tests use 32-token
windows with stride 24 (as tests/fixtures/tiny_pipeline.py does): a 400-token document then spans 17 windows.
"""
import random
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy
from spacy import util
from spacy.cli.debug_config import debug_config
from spacy.cli.debug_data import debug_data
from spacy.tokens import DocBin
from spacy.training import Example

from tests.fixtures.tiny_bert import NOUNS, VERBS

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {"textcat": ROOT / "configs" / "textcat.cfg", "textcat_multilabel": ROOT / "configs" / "textcat_multilabel.cfg"}
TRAIN = [("the cat saw the dog near the bird", "animals"), ("a dog followed the cat and the bird", "animals"),
         ("the king met the queen and the teacher", "people"), ("the teacher told the student and the doctor", "people"),
         ("the city market had a bank on the street", "places"),
         ("the village road reached the river and the mountain", "places")]
LABELS = ["animals", "people", "places"]
WINDOW, STRIDE = 32, 24


def build(name: str, bert_dir: Path):
    overrides = {"paths.init_model": str(bert_dir), "components.transformer.model.get_spans.window": WINDOW,
                 "components.transformer.model.get_spans.stride": STRIDE}
    config = util.load_config(CONFIGS[name], overrides=overrides, interpolate=False)
    return util.load_model_from_config(config, auto_fill=True, validate=True)


def train(name: str, bert_dir: Path, steps: int):
    """The pipeline of configs/NAME.cfg, updated `steps` times on TRAIN (no dropout, a fixed 2e-3 learning rate)."""
    nlp = build(name, bert_dir)
    examples = [Example.from_dict(nlp.make_doc(text), {"cats": {lab: float(lab == label) for lab in LABELS}})
                for text, label in TRAIN]
    util.fix_random_seed(0)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 2e-3
    losses = {}
    for _ in range(steps):
        losses = {}
        nlp.update(examples, sgd=optimizer, losses=losses, drop=0.0)
    return nlp, examples, losses


def cats(nlp, texts):
    return [doc.cats for doc in nlp.pipe(texts)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert_dir):
    nlp, examples, losses = train("textcat", tiny_bert_dir, steps=50)
    path = tmp_path_factory.mktemp("textcat") / "pipeline"
    nlp.to_disk(path)
    return {"nlp": nlp, "examples": examples, "losses": losses, "path": path}


def test_overfitting_IO(trained):
    nlp = trained["nlp"]
    assert trained["losses"]["textcat"] < 0.01
    texts = [text for text, _ in TRAIN]
    predicted = cats(nlp, texts)
    for (_, label), scores in zip(TRAIN, predicted):
        assert sorted(scores) == LABELS and sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
        assert max(scores, key=scores.get) == label and scores[label] > 0.9
    assert nlp.evaluate(trained["examples"])["cats_macro_f"] == 1.0
    loaded = spacy.load(trained["path"])
    assert loaded.pipe_names == ["transformer", "textcat"]
    for before, after in zip(predicted, cats(loaded, texts)):
        assert after == pytest.approx(before, abs=1e-5)


@pytest.mark.slow  # subprocesses or a long end-to-end run: CI runs it, the quick loop skips it
def test_quantized_pipeline_predicts_the_same_classes(trained, tmp_path):
    out = tmp_path / "int8"
    done = subprocess.run([sys.executable, "-m", "spacy", "spanbert-quantize", str(trained["path"]), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    quantized = spacy.load(out)
    assert quantized.meta["spanbert_quantize"]["scheme"] == "int8"
    assert quantized.config["components"]["transformer"]["model"]["quantize"] == "int8"
    texts = [text for text, _ in TRAIN]
    for fp32, int8 in zip(cats(trained["nlp"], texts), cats(quantized, texts)):
        assert sorted(int8) == LABELS and sum(int8.values()) == pytest.approx(1.0, abs=1e-5)
        assert max(int8, key=int8.get) == max(fp32, key=fp32.get)


def test_multilabel_config_learns_independent_labels(tiny_bert_dir):
    nlp, _, losses = train("textcat_multilabel", tiny_bert_dir, steps=50)
    for (_, label), scores in zip(TRAIN, cats(nlp, [text for text, _ in TRAIN])):
        assert sorted(scores) == LABELS
        assert scores[label] > 0.5 and all(scores[other] < 0.5 for other in LABELS if other != label)


def test_a_long_document_is_classified_from_every_window(trained):
    """400 tokens, 17 windows: every token gets a non-zero listener vector, a token in two windows gets the mean of
    its wordpieces in both, and changing only the last tokens (seen by the last windows alone) changes the cats."""
    nlp = trained["nlp"]
    rng = random.Random(0)
    words = [rng.choice(NOUNS + VERBS) for _ in range(400)]
    doc = nlp(" ".join(words))
    assert len(doc) == 400
    spans = nlp.get_pipe("transformer").model.attrs["get_spans"]([doc])[0]
    assert len(spans) == 17 and spans[-1].end == 400
    trf_data = doc._.trf_data
    hidden = trf_data.model_output.last_hidden_state
    assert hidden.shape[0] == len(spans)
    vectors = nlp.get_pipe("textcat").model.get_ref("tok2vec").predict([doc])[0]
    assert vectors.shape == (400, hidden.shape[-1])
    assert (numpy.abs(vectors).sum(axis=1) > 0).all()
    # token 30 lies in windows 0 (tokens 0-31) and 1 (tokens 24-55): its vector averages its wordpieces in both
    flat = hidden.reshape(-1, hidden.shape[-1])
    lengths = trf_data.align.lengths
    assert (lengths >= 1).all()
    start = int(lengths[:30].sum())
    rows = trf_data.align.dataXd[start : start + int(lengths[30])].ravel()
    assert {int(r) // hidden.shape[1] for r in rows} == {0, 1}
    numpy.testing.assert_allclose(vectors[30], flat[rows].mean(axis=0), rtol=1e-5, atol=1e-6)
    # the last 10 tokens are in the last windows only: the first token's vector stays, the doc's cats move
    changed = nlp(" ".join(words[:390] + ["teacher"] * 10))
    changed_vectors = nlp.get_pipe("textcat").model.get_ref("tok2vec").predict([changed])[0]
    numpy.testing.assert_allclose(changed_vectors[0], vectors[0], rtol=1e-5, atol=1e-6)
    assert max(abs(changed.cats[label] - doc.cats[label]) for label in LABELS) > 1e-6


def test_empty_docs(trained):
    nlp = trained["nlp"]
    for doc in nlp.pipe(["", "the cat saw the dog", ""]):
        assert sorted(doc.cats) == LABELS and all(numpy.isfinite(v) for v in doc.cats.values())


@pytest.fixture(scope="module")
def cats_docbin(tmp_path_factory) -> Path:
    """120 one-hot labelled docs (debug data calls fewer than 100 an error)."""
    nlp = spacy.blank("en")
    db = DocBin()
    for text, label in TRAIN * 20:
        doc = nlp.make_doc(text)
        doc.cats = {lab: float(lab == label) for lab in LABELS}
        db.add(doc)
    path = tmp_path_factory.mktemp("debug_textcat") / "train.spacy"
    db.to_disk(path)
    return path


@pytest.mark.parametrize("name", list(CONFIGS))
def test_spacy_debug_config_and_debug_data_pass(name, cats_docbin, tiny_bert_dir):
    overrides = {"paths.train": str(cats_docbin), "paths.dev": str(cats_docbin), "paths.init_model": str(tiny_bert_dir)}
    debug_config(CONFIGS[name], overrides=overrides)  # raises ConfigValidationError on an invalid config
    try:
        debug_data(CONFIGS[name], config_overrides=overrides, silent=True)
    except SystemExit as exit_:  # debug data exits 1 when it found errors
        pytest.fail(f"spacy debug data {name}.cfg found errors (exit {exit_.code})")
    training = util.load_config(CONFIGS[name], interpolate=False)["training"]
    assert training["optimizer"]["learn_rate"]["total_steps"] == training["max_steps"]


@pytest.mark.slow  # subprocesses or a long end-to-end run: CI runs it, the quick loop skips it
def test_spacy_debug_config_on_the_command_line(tiny_bert_dir, cats_docbin):
    done = subprocess.run([sys.executable, "-m", "spacy", "debug", "config", str(CONFIGS["textcat"]),
                           "--paths.init_model", str(tiny_bert_dir), "--paths.train", str(cats_docbin),
                           "--paths.dev", str(cats_docbin)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Config is valid" in done.stdout

"""configs/*.cfg: filled, validate with `spacy debug config`, initialise, and train a few steps on a tiny corpus."""
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.cli.debug_config import debug_config
from spacy.cli.init_config import fill_config
from spacy.tokens import DocBin
from spacy.training.initialize import init_nlp
from spacy.training.loop import train
from spacy.util import load_config
from thinc.api import Config

from spacy_spanbert.models.scorer_layer import get_torch_scorer
from spacy_spanbert.models.transformer import encoder_of, is_spanbert_transformer

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
NAMES = ["ner.cfg", "spancat.cfg", "ner_standalone.cfg"]
TEXTS = [
    ("John saw the big dog in London .", [(0, 4, "PER"), (24, 30, "LOC")]),
    ("Mary liked Paris and Berlin .", [(0, 4, "PER"), (11, 16, "LOC"), (21, 27, "LOC")]),
    ("The company Google met the king in Paris .", [(12, 18, "ORG"), (35, 40, "LOC")]),
]


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> Path:
    """train.spacy/dev.spacy with doc.ents, sentence starts and nested doc.spans["sc"]."""
    nlp = spacy.blank("en")
    db = DocBin()
    for text, ents in TEXTS * 2:
        doc = nlp.make_doc(text)
        doc.ents = [doc.char_span(s, e, label=label) for s, e, label in ents]
        doc.spans["sc"] = list(doc.ents) + [doc[0 : len(doc) - 1]]
        doc.spans["sc"][-1].label_ = "CLAUSE"
        for i, token in enumerate(doc):
            token.is_sent_start = i == 0
        db.add(doc)
    path = tmp_path_factory.mktemp("corpus")
    db.to_disk(path / "train.spacy")
    db.to_disk(path / "dev.spacy")
    return path


def overrides(corpus: Path, bert: Path) -> dict:
    return {
        "paths.train": str(corpus / "train.spacy"),
        "paths.dev": str(corpus / "dev.spacy"),
        "paths.init_model": str(bert),
        "training.max_steps": 4,
        "training.eval_frequency": 2,
        "system.seed": 1,
        "nlp.batch_size": 8,
    }


@pytest.mark.parametrize("name", NAMES)
def test_config_is_filled(name, tmp_path):
    filled = tmp_path / "filled.cfg"
    fill_config(filled, CONFIGS / name, silent=True)
    assert Config().from_disk(filled, interpolate=False) == Config().from_disk(CONFIGS / name, interpolate=False)


@pytest.mark.slow  # subprocesses or a long end-to-end run: CI runs it, the quick loop skips it
def test_cli_debug_config_accepts_the_documented_overrides(tiny_corpus, tiny_bert_dir):
    args = [f"--{k}={v}" for k, v in overrides(tiny_corpus, tiny_bert_dir).items()]
    result = subprocess.run(
        [sys.executable, "-m", "spacy", "debug", "config", str(CONFIGS / "ner.cfg"), *args],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", NAMES)
def test_config_validates_and_initialises(name, tiny_corpus, tiny_bert_dir):
    debug_config(CONFIGS / name, overrides=overrides(tiny_corpus, tiny_bert_dir))
    config = load_config(CONFIGS / name, overrides=overrides(tiny_corpus, tiny_bert_dir), interpolate=False)
    nlp = init_nlp(config)
    component = nlp.get_pipe(nlp.pipe_names[-1])
    assert set(component.labels) >= {"PER", "LOC", "ORG"}
    # shared configs: a SpanBERT transformer component the span model listens to; standalone: its own inside.
    # MiniLM is uncased, so each gives its encoder case types (its token-type table grows by the 3 case rows)
    shared = "transformer" in nlp.pipe_names
    assert nlp.pipe_names == (["transformer", component.name] if shared else [component.name])
    encoder = (nlp.config["components"]["transformer"]["model"] if shared
               else nlp.config["components"][component.name]["model"]["tok2vec"])
    assert encoder["@architectures"] == "spacy-spanbert.SpanBERT.v4" and encoder["case_types"] is True
    trf = nlp.get_pipe("transformer").model if shared else component.model.get_ref("tok2vec")
    hf = encoder_of(next(node for node in trf.walk() if is_spanbert_transformer(node))).transformer
    assert hf.config.type_vocab_size == 2 + 3


def test_ner_config_trains(tiny_corpus, tiny_bert_dir, tmp_path):
    config = load_config(CONFIGS / "ner.cfg", overrides=overrides(tiny_corpus, tiny_bert_dir), interpolate=False)
    nlp = init_nlp(config)
    (tmp_path / "out").mkdir()
    with open(tmp_path / "log.txt", "w") as log:
        train(nlp, tmp_path / "out", stdout=log)
    trained = spacy.load(tmp_path / "out" / "model-last")
    assert trained.pipe_names == ["transformer", "spanbert_ner"]
    ner = trained.get_pipe("spanbert_ner")
    # the width embedding followed the suggester (max_width = null in the model), and was saved that way
    assert get_torch_scorer(ner.model).max_width == ner.max_width == 10
    threshold = {"components": {"spanbert_ner": {"threshold": 0.0}}}  # untrained after 4 steps: keep every entity
    doc = spacy.load(tmp_path / "out" / "model-last", config=threshold)("John saw the big dog in London .")
    scores = doc.spans["spanbert_ents"].attrs["scores"]
    assert scores == [e._.spanbert_score for e in doc.ents]


def test_missing_checkpoint_is_one_clear_error(tiny_corpus, tmp_path):
    config = load_config(
        CONFIGS / "ner.cfg", overrides=overrides(tiny_corpus, tmp_path / "no-such-encoder"), interpolate=False
    )
    with pytest.raises(FileNotFoundError, match="paths.init_model"):
        init_nlp(config)

"""Every shipped spaCy training config passes `spacy debug config` and `spacy debug data` on tiny data.

`debug data` builds the optimizer from the uninterpolated config, so a `${...}` variable inside [training.optimizer]
(once `total_steps = ${training.max_steps}`) fails there although `spacy train` accepts it.
"""
from pathlib import Path

import pytest
import spacy
from spacy.cli.debug_config import debug_config
from spacy.cli.debug_data import debug_data
from spacy.tokens import DocBin
from spacy.util import load_config

from spacy_spanbert.relations import make_record, set_relations

ROOT = Path(__file__).resolve().parents[1]
TRAINING_CONFIGS = sorted([*ROOT.glob("configs/*.cfg"), *ROOT.glob("bench/configs/*.cfg")])
PRETRAIN_CONFIGS = [p for p in TRAINING_CONFIGS if "nlp" not in load_config(p, interpolate=False)]
TRAINING_CONFIGS = [p for p in TRAINING_CONFIGS if p not in PRETRAIN_CONFIGS]
SENTENCES = [("John saw the big dog in London .", [(0, 4, "PER"), (24, 30, "LOC")]),
             ("Mary liked Paris and Berlin .", [(0, 4, "PER"), (11, 16, "LOC"), (21, 27, "LOC")]),
             ("The company Google met the king .", [(12, 18, "ORG")])]


@pytest.fixture(scope="module")
def tiny_docbin(tmp_path_factory) -> Path:
    """120 docs (debug data calls fewer than 100 an error) with entities, the same spans under "sc", a relation
    between the first two entities (configs/rel.cfg) and one topic per doc (configs/textcat*.cfg)."""
    nlp = spacy.blank("en")
    db = DocBin(store_user_data=True)
    for i, (text, ents) in enumerate(SENTENCES * 40):
        doc = nlp.make_doc(text)
        doc.ents = [doc.char_span(s, e, label=label) for s, e, label in ents]
        doc.spans["sc"] = list(doc.ents)
        if len(doc.ents) > 1:
            set_relations(doc, [make_record(doc.ents[0], doc.ents[1], "Located_At")])
        doc.cats = {"EVEN": float(i % 2 == 0), "ODD": float(i % 2 == 1)}
        db.add(doc)
    path = tmp_path_factory.mktemp("debug") / "train.spacy"
    db.to_disk(path)
    return path


def test_the_shipped_configs_are_all_covered():
    names = {p.relative_to(ROOT).as_posix() for p in TRAINING_CONFIGS}
    assert {"configs/ner.cfg", "configs/spancat.cfg", "bench/configs/trf_ner.cfg"} <= names
    assert [p.name for p in PRETRAIN_CONFIGS] == ["pretrain.cfg"]  # checked by its own schema, not by spaCy


@pytest.mark.parametrize("config", TRAINING_CONFIGS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_spacy_debug_config_and_debug_data_pass(config, tiny_docbin, tiny_bert_dir):
    overrides = {"paths.train": str(tiny_docbin), "paths.dev": str(tiny_docbin)}
    if "init_model" in load_config(config, interpolate=False)["paths"]:
        overrides["paths.init_model"] = str(tiny_bert_dir)
    debug_config(config, overrides=overrides)  # raises ConfigValidationError on an invalid config
    try:
        debug_data(config, config_overrides=overrides, silent=True)
    except SystemExit as exit_:  # debug data exits 1 when it found errors
        pytest.fail(f"spacy debug data {config.name} found errors (exit {exit_.code})")


def test_the_learning_rate_decays_over_the_step_budget():
    """total_steps is written out (see the module docstring): it must equal max_steps in every config."""
    for config in TRAINING_CONFIGS:
        training = load_config(config, interpolate=False)["training"]
        assert training["optimizer"]["learn_rate"]["total_steps"] == training["max_steps"], config.name

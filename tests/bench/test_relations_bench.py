"""bench/relations.py end to end on tiny data: every system trains, are scored end to end and on gold entities, and
the report names every figure with its machine line."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "project"))

from test_rel_workflow import write_records  # noqa: E402


@pytest.mark.slow
def test_quick_run_reports_every_system(tmp_path, tiny_bert_dir):
    from bench import relations

    data = tmp_path / "conll04"
    data.mkdir()
    for split, n in (("train", 24), ("valid", 6), ("test", 6)):
        write_records(data / f"{split}.json", n, seed=len(split))
    out = tmp_path / "relations.json"
    relations.main(["--quick", "--conll04-dir", str(data), "--encoder", str(tiny_bert_dir), "--seeds", "1",
                    "--steps", "4", "--work-dir", str(tmp_path / "work"), "--output", str(out)])
    result = json.loads(out.read_text())
    assert set(result["systems"]) == {"spanbert_rel", "full_gradient", "typed_markers", "tutorial_baseline"}
    from spacy.util import load_config

    def grad_factor(system):
        config = load_config(tmp_path / "work" / system / "seed1" / "model-best" / "config.cfg")
        return config["components"]["spanbert_rel"]["model"]["tok2vec"]["grad_factor"]

    shipped = load_config(ROOT / "configs" / "rel.cfg")["components"]["spanbert_rel"]["model"]["tok2vec"]
    assert grad_factor("spanbert_rel") == shipped["grad_factor"] < 1.0 and grad_factor("full_gradient") == 1.0
    for runs in result["systems"].values():
        run = runs[0]
        for key in ("rel_f", "rel_boundaries_f", "ents_f", "rel_f_gold_entities"):
            assert 0.0 <= run[key] <= 1.0
        assert run["wps"] > 0 and run["wps_without_rel"] > 0 and run["train_s"] > 0
    report = out.with_suffix(".md").read_text()
    assert "SpERT (BERT-base, published)" in report and "Machine:" in report
    assert all(f"| {system} |" in report for system in result["systems"])


def test_a_missing_corpus_is_one_line_before_any_training(tmp_path, tiny_bert_dir):
    from bench import relations

    with pytest.raises(FileNotFoundError, match="pass --conll04-dir"):
        relations.main(["--conll04-dir", str(tmp_path / "none"), "--encoder", str(tiny_bert_dir),
                        "--work-dir", str(tmp_path / "work"), "--output", str(tmp_path / "r.json")])


def test_gold_entity_scores_hand_the_relation_component_labelled_gold_entities(tiny_bert_dir):
    """The 'gold entities' column: every reference entity reaches spanbert_rel with its label, so a pipeline that
    learned the relations scores them; entity components are switched off for it."""
    sys.path.insert(0, str(ROOT / "tests" / "pipeline"))
    from bench.relations import gold_entity_scores
    from test_relations import examples, rel_pipeline, train

    nlp = rel_pipeline(tiny_bert_dir)
    egs = examples(nlp)
    train(nlp, egs)
    assert gold_entity_scores(nlp, egs)["rel_micro_f"] == 1.0

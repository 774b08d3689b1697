"""The `rel` workflow of project.yml end to end on a small generated CoNLL04-style corpus and a tiny random BERT,
and the relation converter and fetcher's checks and one-line errors.

`rel_fetch` checks the sha256 of the published CoNLL04 files, so the workflow test starts after it, with generated
files in the same JSON layout; the fetcher itself is tested on a directory whose checksums are known (a copy of the
real files, where the machine has one) and on bad input.
"""
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from weasel.util import load_project_config

from spacy_spanbert.relations import get_relations

ROOT = Path(__file__).resolve().parents[2]
SHARED_CONLL04 = ROOT.parent / "shared" / "data" / "conll04"
PEOPLE, PLACES, ORGS = ["John", "Mary", "Peter"], ["Boston", "Paris", "Rome"], ["Google", "Reuters"]


def write_records(path: Path, n: int, seed: int) -> Path:
    """Sentences 'P works for O in L .' / 'P lives in L .' with their entities and relations (CoNLL04's layout)."""
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        person, place, org = rng.choice(PEOPLE), rng.choice(PLACES), rng.choice(ORGS)
        if rng.random() < 0.5:
            records.append({"tokens": [person, "works", "for", org, "in", place, "."],
                            "entities": [[0, 1, "Peop"], [3, 4, "Org"], [5, 6, "Loc"]],
                            "relations": [[0, 1, 3, 4, "Work_For"], [3, 4, 5, 6, "OrgBased_In"]]})
        else:
            records.append({"tokens": [person, "lives", "in", place, "."],
                            "entities": [[0, 1, "Peop"], [3, 4, "Loc"]], "relations": [[0, 1, 3, 4, "Live_In"]]})
    path.write_text(json.dumps(records), encoding="utf8")
    return path


def _script(name: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=str(ROOT))


@pytest.mark.slow  # subprocesses or a long end-to-end run: CI runs it, the quick loop skips it
def test_converter_writes_gold_entities_and_relations(tmp_path):
    src = write_records(tmp_path / "train.json", 5, seed=1)
    done = _script("convert_relations.py", src, tmp_path / "train.spacy")
    assert done.returncode == 0, done.stderr
    docs = list(DocBin().from_disk(tmp_path / "train.spacy").get_docs(spacy.blank("en").vocab))
    records = json.loads(src.read_text())
    assert len(docs) == 5 and all(doc.has_unknown_spaces for doc in docs)
    for doc, record in zip(docs, records):
        assert [t.text for t in doc] == record["tokens"]
        assert [[e.start, e.end, e.label_] for e in doc.ents] == record["entities"]
        assert sorted([*r["head"], *r["tail"], r["label"]] for r in get_relations(doc)) == sorted(record["relations"])


@pytest.mark.parametrize("record,problem", [
    ({"tokens": ["a", "b"], "entities": [[0, 1, "X"]], "relations": [[0, 1, 1, 2, "R"]]}, "is not an entity"),
    ({"tokens": ["a"], "entities": [[0, 3, "X"]]}, "is not [start, end, type]"),
    ({"tokens": []}, "non-empty list"),
])
@pytest.mark.slow  # subprocesses or a long end-to-end run: CI runs it, the quick loop skips it
def test_converter_errors_name_file_record_and_fix_before_writing(tmp_path, record, problem):
    good = {"tokens": ["a"], "entities": [], "relations": []}
    (tmp_path / "bad.json").write_text(json.dumps([good, record]))
    done = _script("convert_relations.py", tmp_path / "bad.json", tmp_path / "out.spacy")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and problem in lines[0] and "bad.json record 1" in lines[0]
    assert not (tmp_path / "out.spacy").exists()


def test_fetcher_checks_sha256_and_copies_a_good_local_copy(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for split in ("train", "valid", "test"):
        write_records(bad / f"{split}.json", 2, seed=0)
    done = _script("fetch_conll04.py", tmp_path / "dest", "--from", bad)
    assert done.returncode == 1 and "sha256 mismatch" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "dest").exists()
    if not SHARED_CONLL04.is_dir():
        pytest.skip("no local CoNLL04 copy on this machine")
    done = _script("fetch_conll04.py", tmp_path / "dest", "--from", SHARED_CONLL04)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == ["test.json", "train.json", "valid.json"]
    assert "up to date" in _script("fetch_conll04.py", tmp_path / "dest", "--from", SHARED_CONLL04).stdout


@pytest.mark.slow
def test_rel_workflow_trains_evaluates_and_packages(tmp_path, tiny_bert_dir):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "project.yml", project / "project.yml")
    for name in ("scripts", "configs"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "spacy_spanbert").symlink_to(ROOT / "spacy_spanbert")
    data = project / "data"
    data.mkdir()
    for split, n in (("train", 24), ("valid", 6), ("test", 6)):
        write_records(data / f"{split}.json", n, seed=len(split))
    name = "spanbert_rel_smoke_test"
    overrides = {"conll04_dir": "data", "rel_encoder": str(tiny_bert_dir), "rel_steps": 6, "rel_warmup_steps": 1,
                 "rel_eval_frequency": 3, "rel_name": name, "version": "0.0.1"}
    args = [f"--vars.{key}={value}" for key, value in overrides.items()]
    config = load_project_config(project, overrides={f"vars.{k}": v for k, v in overrides.items()})
    steps = config["workflows"]["rel"]
    assert steps == ["precision", "rel_fetch", "rel_convert", "rel_train", "rel_evaluate", "rel_package"]
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    try:
        for step in steps[2:]:
            done = subprocess.run([sys.executable, "-m", "spacy", "project", "run", step, str(project), *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            assert done.returncode == 0, f"{step} failed:\n{done.stdout[-4000:]}"
        metrics = json.loads((project / "metrics" / "rel_test.json").read_text())
        assert set(metrics["relations"]["per_type"]) <= {"Work_For", "OrgBased_In", "Live_In"}
        assert 0.0 <= metrics["relations"]["overall"]["f"] <= 1.0 and "f" in metrics["entities"]["overall"]
        check = json.loads((project / "metrics" / "rel_package_check.json").read_text())
        assert check["pipeline"] == ["transformer", "spanbert_ner", "spanbert_rel"] and "relations" in check
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", f"en_{name}"], capture_output=True)

"""Every name declared in pyproject's entry points resolves through spaCy's registries, in a fresh interpreter that
never imports spacy_spanbert itself (this is how users meet the plugin: configs and `nlp.add_pipe` by name)."""
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GROUP_TO_REGISTRY = {
    "spacy_architectures": "architectures",
    "spacy_misc": "misc",
    "spacy_scorers": "scorers",
    "spacy_cli": "cli",
}


def _declared() -> dict:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return data["project"]["entry-points"]


def _run(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_entry_points_declare_every_group():
    declared = _declared()
    for group in ("spacy_factories", "spacy_architectures", "spacy_misc", "spacy_cli"):
        assert declared.get(group), f"no {group} entry points declared"


@pytest.mark.slow  # subprocesses or a long end-to-end run: CI runs it, the quick loop skips it
def test_registered_names_resolve_without_import():
    declared = _declared()
    checks = {
        reg: sorted(declared[group]) for group, reg in GROUP_TO_REGISTRY.items() if group in declared
    }
    factories = sorted(declared["spacy_factories"])
    code = f"""
import json, sys
import spacy
from spacy.util import registry
checks = {checks!r}
found = {{}}
for reg, names in checks.items():
    for name in names:
        func = getattr(registry, reg).get(name)
        found[name] = callable(func)
nlp = spacy.blank("en")
for factory in {factories!r}:
    found[factory] = nlp.has_factory(factory)
print(json.dumps(found))
"""
    found = json.loads(_run(code).strip().splitlines()[-1])
    expected = [n for names in checks.values() for n in names] + factories
    assert sorted(found) == sorted(expected)
    assert all(found.values()), {k: v for k, v in found.items() if not v}


@pytest.mark.slow  # subprocesses or a long end-to-end run: CI runs it, the quick loop skips it
def test_add_pipe_by_name_in_blank_pipeline():
    out = _run(
        "import spacy\n"
        "nlp = spacy.blank('en')\n"
        "nlp.add_pipe('spanbert_ner')\n"
        "nlp.add_pipe('spanbert_spancat')\n"
        "print(nlp.pipe_names)\n"
    )
    assert "spanbert_ner" in out and "spanbert_spancat" in out


@pytest.mark.slow  # subprocesses or a long end-to-end run: CI runs it, the quick loop skips it
def test_spacy_cli_lists_pretrain_command():
    proc = subprocess.run(
        [sys.executable, "-m", "spacy", "spanbert-pretrain", "--help"],
        capture_output=True, text=True, cwd="/", timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "OUTPUT_DIR" in proc.stdout.upper()

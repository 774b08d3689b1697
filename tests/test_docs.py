"""The docs as a user meets them: a short README, no history in user docs, every code block either run here (on a
tiny trained pipeline, offline) or marked with the reason it is not, every registered setting in the reference, the
generated pages in sync with their sources, and the site building with `mkdocs build --strict`."""
import importlib
import inspect
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example
from spacy.util import fix_random_seed, load_config

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- (?:test: (?P<test>[\w]+)|not run: (?P<reason>[^>]+)) -->\n)?```(?P<lang>python|bash)\n(?P<code>.*?)```",
                   re.S)
SETUP_COMMANDS = 2  # README's two opening commands: the test command is what CI runs, the main one its smoke test


def blocks(page: Path):
    return [m.groupdict() for m in BLOCK.finditer(page.read_text(encoding="utf8"))]


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text(encoding="utf8").splitlines()) <= 200


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_user_docs_carry_no_history(page):
    text = page.read_text(encoding="utf8")
    assert not re.search(r"\bissues? \d+", text, re.I), "issue numbers belong in the git log"
    assert not re.search(r"\bcommit [0-9a-f]{7,40}\b|\b[0-9a-f]{7}\b(?=[),. ])", text), "commit hashes too"
    assert "measured before" not in text and "previous run" not in text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_code_block_is_tested_or_says_why_not(page):
    found = blocks(page)
    skip = SETUP_COMMANDS if page.name == "README.md" else 0
    unmarked = [b["code"].splitlines()[0] for b in found[skip:] if not (b["test"] or b["reason"])]
    assert not unmarked, f"{page.name}: mark these blocks <!-- test: NAME --> or <!-- not run: why -->: {unmarked}"


@pytest.fixture(scope="module")
def ner_pipeline_dir(tmp_path_factory, tiny_bert_dir) -> Path:
    """A directory holding training/model-best: configs/ner.cfg on the tiny BERT, trained a little on 3 sentences."""
    from spacy.training.initialize import init_nlp

    data = [("Angela Merkel met Emmanuel Macron in Paris .", [(0, 13, "PER"), (18, 33, "PER"), (37, 42, "LOC")]),
            ("Google hired Mary in London .", [(0, 6, "ORG"), (13, 17, "PER"), (21, 27, "LOC")])]
    root = tmp_path_factory.mktemp("docs_pipeline")
    blank = spacy.blank("en")
    docs = [blank.make_doc(t) for t, _ in data]
    for doc, (_, ents) in zip(docs, data):
        doc.ents = [doc.char_span(s, e, label=label) for s, e, label in ents]
    DocBin(docs=docs).to_disk(root / "train.spacy")
    overrides = {"paths.init_model": str(tiny_bert_dir), "components.transformer.model.get_spans.window": 32,
                 "components.transformer.model.get_spans.stride": 24, "paths.train": str(root / "train.spacy"),
                 "paths.dev": str(root / "train.spacy")}
    nlp = init_nlp(load_config(ROOT / "configs" / "ner.cfg", overrides=overrides, interpolate=False))
    examples = [Example.from_dict(nlp.make_doc(t), {"entities": e}) for t, e in data]
    fix_random_seed(0)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(30):
        nlp.update(examples, sgd=optimizer)
    (root / "training").mkdir()
    nlp.to_disk(root / "training" / "model-best")
    return root


def _tested_blocks():
    return [(page, i, b) for page in PAGES for i, b in enumerate(blocks(page)) if b["test"]]


@pytest.mark.slow  # subprocesses or a long end-to-end run: CI runs it, the quick loop skips it
@pytest.mark.parametrize("page,index,block", _tested_blocks(), ids=lambda v: v.name if isinstance(v, Path) else "")
def test_marked_blocks_run(page, index, block, ner_pipeline_dir, tmp_path):
    assert block["lang"] == "python" and block["test"] in ("ner_pipeline", "standalone")
    cwd = ner_pipeline_dir if block["test"] == "ner_pipeline" else tmp_path
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(block["code"])], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, f"{page.name} block {index}:\n{done.stderr[-3000:]}"


def _registered():
    """(section name in the reference, parameter names) of every registered function and command."""
    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    for group, items in entry_points.items():
        for name, target in items.items():
            if target.startswith("spacy_spanbert.retired:"):
                continue  # listed under "Retired names" (test_the_reference_lists_every_retired_name)
            module, attr = target.split(":")
            params = inspect.signature(getattr(importlib.import_module(module), attr)).parameters
            skip = {"spacy_factories": {"nlp", "name"}, "spacy_cli": {"ctx"}}.get(group, set())
            yield name, [p for p in params if p not in skip]


@pytest.mark.parametrize("name,params", list(_registered()), ids=lambda v: v if isinstance(v, str) else "")
def test_the_reference_documents_every_setting(name, params):
    text = (ROOT / "docs" / "reference.md").read_text(encoding="utf8")
    sections = re.split(r"^### ", text, flags=re.M)
    section = next((s for s in sections if s.startswith(f"`{name}`")), None)
    assert section is not None, f"docs/reference.md has no section ### `{name}`"
    missing = [p for p in params if f"`{p}`" not in section]
    assert not missing, f"docs/reference.md, `{name}`: settings not documented: {missing}"


def test_the_reference_lists_every_retired_name():
    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    retired = [name for items in entry_points.values() for name, target in items.items()
               if target.startswith("spacy_spanbert.retired:")]
    text = (ROOT / "docs" / "reference.md").read_text(encoding="utf8")
    table = text[text.index("## Retired names"):]
    assert retired and not [name for name in retired if f"`{name}`" not in table]


def test_generated_pages_are_in_sync():
    for cmd in (["scripts/document_project.py", "--check"], ["bench/report.py", "--check"]):
        done = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{cmd[0]} --check: {done.stdout[-500:]} {done.stderr[-500:]}"


def test_the_site_builds_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    for page in ("index.html", "quickstart/index.html", "reference/index.html", "benchmarks/index.html"):
        html = (tmp_path / "site" / page).read_text(encoding="utf8")
        assert "spacy-spanbert" in html and "<h1" in html

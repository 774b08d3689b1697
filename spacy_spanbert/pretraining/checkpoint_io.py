"""Checkpoint layout, atomic publication, rotation, validation and the run identity used by `--resume`.

OUTPUT_DIR/checkpoints/step-N/ holds encoder/ (HF format + tokenizer), heads.safetensors, optimizer.pt,
scheduler.pt, rng_state*.pth and trainer_state.json (global step and epoch: the data position). A checkpoint is
written under checkpoints/.tmp-staging/checkpoint-N (the Trainer's output directory) and renamed into place once
complete, so a crash never leaves a half-written step-N behind.
"""
import errno
import json
import os
import re
import shutil
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

STEP_RE = re.compile(r"^step-(\d+)$")
REQUIRED = ("trainer_state.json", "heads.safetensors", "optimizer.pt", "scheduler.pt", "encoder/model.safetensors")
META_FILE = "meta.json"
TORCH_FILES = ("optimizer.pt", "scheduler.pt", "rng_state*.pth")  # torch.save zip archives
DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


class DiskFullError(OSError):
    """The disk filled up while a run wrote to its output directory (the message is the whole story)."""

    def __str__(self) -> str:
        return str(self.args[0])


def checkpoints_dir(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def staging_dir(output_dir: Path) -> Path:
    """Where Trainer writes a checkpoint before it is published (TrainingArguments.output_dir)."""
    return checkpoints_dir(output_dir) / ".tmp-staging"


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
        for pattern in TORCH_FILES:
            for file in path.glob(pattern):
                _check_archive(file)
    except (ValueError, OSError) as err:
        raise ValueError(f"Checkpoint {path} is corrupt ({err}): delete it to resume from the previous one.") from None
    return path


def _check_archive(file: Path) -> None:
    """torch.save writes a zip archive: a truncated one has no central directory, a garbled one fails its CRCs."""
    try:
        with zipfile.ZipFile(file) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{file.name}: {err}") from None
    if bad is not None:
        raise ValueError(f"{file.name}: member {bad} fails its checksum")


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
    has_checkpoints = bool(list_checkpoints(output_dir))
    if meta.exists() and has_checkpoints:  # without checkpoints there is no run to mix with (e.g. a failed start)
        try:
            old = json.loads(meta.read_text()).get("identity")
        except ValueError:
            raise ValueError(f"{meta} is corrupt: remove {output_dir} or choose another output directory.") from None
        if old != identity:
            changed = sorted(k for k in set(old or {}) | set(identity) if (old or {}).get(k) != identity.get(k))
            raise ValueError(f"{output_dir} holds another run (different {', '.join(changed)}): choose another "
                             f"output directory or restore the original settings.")
    if has_checkpoints and not resume:
        raise ValueError(f"{output_dir} already holds checkpoints: pass --resume to continue, or use another "
                         f"output directory.")
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = meta.with_suffix(".tmp")
    tmp.write_text(json.dumps({"identity": identity}, indent=2))
    os.replace(tmp, meta)


@contextmanager
def disk_full_is_one_line(output_dir: Path) -> Iterator[None]:
    """Turn "no space left on device" during a checkpoint or encoder save into one DiskFullError line.

    Checkpoints are published by rename, so the latest complete one is intact; the half-written staging
    directories are removed to give the space back.
    """
    try:
        yield
    except Exception as err:
        if not _is_disk_full(err):
            raise
        root = checkpoints_dir(output_dir)
        for tmp in [*root.glob(".tmp-*"), Path(output_dir) / ".encoder-tmp"]:
            shutil.rmtree(tmp, ignore_errors=True)
        found = list_checkpoints(output_dir)
        kept = f"the latest checkpoint {found[-1].name} is intact" if found else "no checkpoint was completed yet"
        raise DiskFullError(f"No space left on device while saving to {output_dir} ({kept}): free disk space or "
                            f"lower --training.save_total_limit, then rerun with --resume") from None


def _is_disk_full(err: BaseException) -> bool:
    """OSError(ENOSPC/EDQUOT) anywhere in the chain; torch's writer reports it as a RuntimeError text."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in DISK_FULL:
            return True
        if "No space left on device" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False

"""Prepare the pretraining output directory before `spacy spanbert-pretrain ... --resume` runs.

The project always passes `--resume`, and this step decides what that means. By default a rerun (weasel reruns a
command when its inputs or settings changed) must start over, so an existing run directory is moved aside to
DIR.previous (its encoder stays available until the new run has finished; an older DIR.previous is replaced).
With `--keep true` the directory stays, so pretraining continues from its latest checkpoint: after an interruption,
or to extend a finished run to more steps with the same settings.

Usage: python scripts/prepare_run_dir.py DIR [--keep true|false]
"""
import argparse
import shutil
import sys
from pathlib import Path
from typing import List, Optional


def prepare(run_dir: Path, keep: bool) -> str:
    """Move `run_dir` aside unless `keep`. RETURNS a short description of what was done."""
    if not run_dir.exists():
        return f"{run_dir}: new run"
    if keep:
        return f"{run_dir}: kept, pretraining resumes from its latest checkpoint"
    previous = run_dir.with_name(run_dir.name + ".previous")
    if previous.exists():
        shutil.rmtree(previous)
    run_dir.rename(previous)
    return f"{run_dir}: earlier run moved to {previous}, starting a new run"


def _flag(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--keep", type=_flag, default=False, help="keep the directory to resume (true/false)")
    args = parser.parse_args(argv)
    try:
        print(prepare(args.run_dir, args.keep))
    except OSError as err:
        sys.exit(f"prepare_run_dir: {args.run_dir}: {err}")


if __name__ == "__main__":
    main()

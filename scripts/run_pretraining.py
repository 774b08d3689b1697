"""Start or continue the project's pretraining run: `spacy spanbert-pretrain`, given `--resume` only to continue.

Usage: python scripts/run_pretraining.py CONFIG RUN_DIR --resume true|false [spanbert-pretrain options ...]

`--resume false` (the project's default) starts a new run. Weasel reruns the `pretrain` step when its inputs or
settings changed, and the pretraining command refuses a directory that holds another run, so an existing RUN_DIR
is first moved aside to RUN_DIR.previous (its encoder stays available until the new run has finished; an older
RUN_DIR.previous is replaced). `--resume true` keeps RUN_DIR and passes `--resume`: pretraining continues from the
latest checkpoint, after an interruption or to extend a finished run to more steps with the same settings.
Every other option goes to `spacy spanbert-pretrain` unchanged.
"""
import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from project_io import flag


def move_aside(run_dir: Path) -> str:
    """Make room for a new run in `run_dir`. RETURNS a short description of what was done."""
    if not run_dir.exists():
        return f"{run_dir}: new run"
    previous = run_dir.with_name(run_dir.name + ".previous")
    if previous.exists():
        shutil.rmtree(previous)
    run_dir.rename(previous)
    return f"{run_dir}: earlier run moved to {previous}, starting a new run"


def pretrain_command(config: Path, run_dir: Path, resume: bool, options: Sequence[str]) -> List[str]:
    """The `spacy spanbert-pretrain` command line, run with this interpreter (whose entry points are installed)."""
    return [sys.executable, "-m", "spacy", "spanbert-pretrain", str(config), str(run_dir),
            *(["--resume"] if resume else []), *options]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("config", type=Path, help="pretraining config, e.g. configs/pretrain.cfg")
    parser.add_argument("run_dir", type=Path, help="the run directory (encoder/, checkpoints/, log.jsonl)")
    parser.add_argument("--resume", type=flag, required=True,
                        help="true: continue the run in RUN_DIR; false: move it aside and start a new one")
    args, options = parser.parse_known_args(argv)
    if not args.config.is_file():  # checked before anything is moved
        sys.exit(f"run_pretraining: config {args.config} not found: pass the path of a pretraining config")
    if args.resume:
        print(f"{args.run_dir}: continuing from its latest checkpoint (spanbert-pretrain --resume)")
    else:
        try:
            print(move_aside(args.run_dir))
        except OSError as err:
            sys.exit(f"run_pretraining: cannot move {args.run_dir} aside: {err}")
    sys.stdout.flush()
    return subprocess.run(pretrain_command(args.config, args.run_dir, args.resume, options)).returncode


if __name__ == "__main__":
    sys.exit(main())

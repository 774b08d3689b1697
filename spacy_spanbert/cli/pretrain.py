"""`python -m spacy spanbert-pretrain CONFIG OUTPUT_DIR [--resume] [--gpu-id N] [--section.key value ...]`.

Registered on spaCy's CLI app when spaCy loads the `spacy_cli` entry points, so this module stays import-light:
torch and transformers are imported only when the command runs.
"""
from pathlib import Path
from typing import List, Optional

import typer
from spacy.cli import app
from typer import Argument as Arg
from typer import Option as Opt
from weasel.util import parse_config_overrides
from wasabi import msg

from ._util import fail, fail_with

COMMAND = "spanbert-pretrain"


def run_pretrain(config_path: Path, output_dir: Path, extra_args: List[str], resume: bool = False,
                 gpu_id: Optional[int] = None) -> Path:
    """Run pretraining; bad input ends the process with a one-line error (exit code 1)."""
    import logging
    import os

    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun, only rank 0 reports progress
    logging.basicConfig(level=logging.INFO if main_rank else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from ..pretraining.checkpoint_io import DiskFullError
    from ..pretraining.run import pretrain

    try:
        overrides = parse_config_overrides(extra_args, env_var="SPACY_CONFIG_OVERRIDES")  # as spacy train
        encoder = pretrain(config_path, output_dir, overrides, resume=resume, gpu_id=gpu_id)
    except (ValueError, FileNotFoundError, DiskFullError) as err:
        fail_with(err)
    except Exception as err:  # config errors from confection span several lines: squeeze them into one
        if type(err).__name__ == "ConfigValidationError":
            fail(f"Invalid config: {' '.join(str(err).split())[:400]}")
        raise
    if main_rank:
        msg.good(f"Encoder saved to {encoder}")
    return encoder


@app.command(COMMAND, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def pretrain_cli(
    # fmt: off
    ctx: typer.Context,  # holds the --section.key overrides
    config_path: Path = Arg(..., help="Pretraining config, e.g. configs/pretrain.cfg", dir_okay=False),
    output_dir: Path = Arg(..., help="Directory for checkpoints/, encoder/, log.jsonl and loss.png"),
    resume: bool = Opt(False, "--resume", help="Continue from the latest checkpoint in OUTPUT_DIR"),
    gpu_id: Optional[int] = Opt(None, "--gpu-id", "-g", help="GPU id, -1 for CPU (default: system.gpu_id)"),
    # fmt: on
):
    """Pretrain a BERT-family encoder with SpanBERT's span masking and Span Boundary Objective."""
    run_pretrain(config_path, output_dir, ctx.args, resume=resume, gpu_id=gpu_id)

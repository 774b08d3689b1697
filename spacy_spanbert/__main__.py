"""`python -m spacy_spanbert pretrain CONFIG OUTPUT_DIR ...` and the `spacy-spanbert` console script."""
from pathlib import Path
from typing import Optional

import typer

cli = typer.Typer(name="spacy-spanbert", add_completion=False, no_args_is_help=True)


@cli.callback()
def _root() -> None:
    """SpanBERT for spaCy."""


@cli.command("pretrain", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def pretrain(
    ctx: typer.Context,
    config_path: Path = typer.Argument(..., help="Pretraining config, e.g. configs/pretrain.cfg", dir_okay=False),
    output_dir: Path = typer.Argument(..., help="Directory for checkpoints/, encoder/, log.jsonl and loss.png"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in OUTPUT_DIR"),
    gpu_id: Optional[int] = typer.Option(None, "--gpu-id", "-g", help="GPU id, -1 for CPU"),
) -> None:
    """Same as `python -m spacy spanbert-pretrain` (dotted overrides: --training.max_steps 100 ...)."""
    from .cli.pretrain import run_pretrain

    run_pretrain(config_path, output_dir, ctx.args, resume=resume, gpu_id=gpu_id)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()

"""`python -m spacy spanbert-calibrate MODEL_DIR DEV_SPACY OUTPUT_DIR [--component NAME] [--platt-floor P]`.

Fits the calibration of a trained `spanbert_ner` or `spanbert_rel` (a temperature) / `spanbert_spancat` or a
multi-label `spanbert_rel` (per-label Platt scaling) on labelled dev data (see `calibration`) and saves the
calibrated pipeline; the fit is recorded in `meta.json` under `spanbert_calibration`. Registered on spaCy's CLI through the `spacy_cli` entry point; the pipeline and
torch load only when the command runs.
"""
from pathlib import Path
from typing import Dict, Optional

from spacy.cli import app
from typer import Argument as Arg
from typer import Option as Opt
from wasabi import msg

from ._util import fail_with

COMMAND = "spanbert-calibrate"


def run_calibrate(model_dir: Path, dev_path: Path, output_dir: Path, component: Optional[str] = None,
                  gpu_id: int = -1, batch_size: int = 32, platt_floor: Optional[float] = None) -> Dict[str, object]:
    """Load, check the input, fit, save. Bad input raises ValueError/FileNotFoundError before any prediction."""
    import spacy
    from spacy.training import Corpus

    from ..pipeline.calibration import PLATT_FLOOR, calibrate, check_platt_floor, resolve_component

    if not (Path(model_dir) / "config.cfg").is_file():
        raise FileNotFoundError(f"{model_dir}: not a saved spaCy pipeline (no config.cfg); pass a trained pipeline "
                                f"directory such as training/model-best")
    if not Path(dev_path).is_file() or Path(dev_path).suffix != ".spacy":
        raise FileNotFoundError(f"{dev_path}: dev data not found (a .spacy DocBin is needed); create it with "
                                f"`spacy project run convert` or `spacy convert`")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    platt_floor = PLATT_FLOOR if platt_floor is None else platt_floor
    check_platt_floor(platt_floor, "--platt-floor")
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = spacy.load(model_dir)
    name = resolve_component(nlp, component).name
    examples = list(Corpus(dev_path)(nlp))
    if not examples:
        raise ValueError(f"{dev_path}: the dev data holds no documents; pass a labelled dev .spacy file")
    result = calibrate(nlp, examples, name, batch_size, platt_floor)
    nlp.meta.setdefault("spanbert_calibration", {})[name] = {**result, "dev": str(dev_path)}
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    nlp.to_disk(output_dir)
    return result


@app.command(COMMAND)
def calibrate_cli(
    # fmt: off
    model_dir: Path = Arg(..., help="Trained pipeline directory, e.g. training/model-best"),
    dev_path: Path = Arg(..., help="Labelled dev data (.spacy), e.g. corpus/dev.spacy"),
    output_dir: Path = Arg(..., help="Where to save the calibrated pipeline (may be MODEL_DIR itself)"),
    component: Optional[str] = Opt(None, "--component", "-c", help="Component to calibrate (default: the only spanbert_ner/spancat/rel)"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, -1 for CPU"),
    batch_size: int = Opt(32, "--batch-size", "-b", help="Docs per prediction batch"),
    platt_floor: Optional[float] = Opt(None, "--platt-floor", help="spancat, multi-label rel: fit on pairs scoring >= this (default 0.01)"),
    # fmt: on
):
    """Fit the confidence calibration of a trained spanbert_ner or spanbert_rel (temperature) / spanbert_spancat or
    multi-label spanbert_rel (per-label Platt scaling) on dev data and save it."""
    try:
        result = run_calibrate(model_dir, dev_path, output_dir, component, gpu_id, batch_size, platt_floor)
    except (ValueError, FileNotFoundError) as err:
        fail_with(err)
        return
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else ", ".join(f"{x:.3f}" for x in v)  # noqa: E731
    msg.good(f"{result['component']}: temperature {fmt(result['temperature'])}, bias "
             f"{fmt(result['calibration_bias'])}; dev NLL {result['nll_before']:.4f} -> "
             f"{result['nll_after']:.4f}, ECE {result['ece_before']:.4f} -> {result['ece_after']:.4f}; "
             f"saved to {output_dir}")

"""`python -m spacy spanbert-quantize IN_PIPELINE OUT_PIPELINE [--scheme int8|int8_per_tensor]`.

Turns a trained pipeline's SpanBERT transformer(s) into int8 for CPU inference: every `spacy-spanbert.SpanBERT.v4`
model in the config gets `quantize` set (and `cpu_bf16` off), the pipeline is loaded under that config (the fp32
weights are quantized as they load) and saved with int8 weights.
The result is an ordinary spaCy pipeline: `spacy.load`, `spacy package` and `spacy benchmark speed` take it as it
is. Registered on spaCy's CLI through the `spacy_cli` entry point; torch and the pipeline load only when the command
runs.
"""
from pathlib import Path
from typing import Any, Dict, List, Tuple

from spacy.cli import app
from typer import Argument as Arg
from typer import Option as Opt
from wasabi import msg

from ._util import fail_with

COMMAND = "spanbert-quantize"
# models.transformer.ARCHITECTURE, written out: spaCy imports every CLI module at start, and that one imports torch
ARCHITECTURE = "spacy-spanbert.SpanBERT.v4"


def transformer_sections(config: Dict[str, Any], path: Tuple[str, ...] = ()) -> List[Tuple[str, ...]]:
    """Dotted paths of every SpanBERT.v4 model block in a (nested dict) config, e.g. components.transformer.model.

    Shared `transformer` components and span components with a transformer of their own are both found."""
    found = []
    for key, value in config.items():
        if isinstance(value, dict):
            if value.get("@architectures") == ARCHITECTURE:
                found.append((*path, key))
            else:
                found.extend(transformer_sections(value, (*path, key)))
    return found


def dir_size(path: Path) -> int:
    """Bytes of all files under `path` (what a pipeline costs on disk)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def check_paths(in_dir: Path, out_dir: Path) -> None:
    """One-line errors for a missing input pipeline or an output that would overwrite something."""
    if not (Path(in_dir) / "config.cfg").is_file() or not (Path(in_dir) / "meta.json").is_file():
        raise FileNotFoundError(f"{in_dir}: not a saved spaCy pipeline (no config.cfg/meta.json); pass a trained "
                                f"pipeline directory such as training/model-best")
    out = Path(out_dir)
    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        raise FileExistsError(f"{out_dir} already exists: pass a new (or empty) output directory, or remove it")


def quantize_overrides(config: Dict[str, Any], scheme: str, in_dir: Path) -> Dict[str, str]:
    """spacy.load config overrides that make every SpanBERT model in `config` int8."""
    sections = transformer_sections(config.get("components", {}), ("components",))
    if not sections:
        raise ValueError(f"{in_dir} has no spacy-spanbert.SpanBERT transformer to quantize (its config uses none); "
                         f"quantize pipelines trained with configs/ner.cfg, spancat.cfg or ner_standalone.cfg")
    overrides: Dict[str, str] = {}
    for path in sections:
        block = config
        for key in path:
            block = block[key]
        dotted = ".".join(path)
        if block.get("quantize") is not None:
            raise ValueError(f"{in_dir} is already quantized ({dotted}.quantize = {block['quantize']!r}): pass the "
                             f"fp32 pipeline it was made from")
        overrides[f"{dotted}.quantize"] = scheme
        if block.get("cpu_bf16"):  # trained under bf16 autocast: the int8 encoder runs without it
            overrides[f"{dotted}.cpu_bf16"] = False
    return overrides


def run_quantize(in_dir: Path, out_dir: Path, scheme: str = "int8") -> Dict[str, Any]:
    """Check the input, load IN quantized, save OUT; RETURNS sizes in bytes and the quantized config blocks."""
    import spacy
    from spacy.util import load_config

    from ..models.quantize import check_scheme, quantized_scheme
    from ..models.transformer import encoder_of, is_spanbert_transformer

    check_scheme(scheme)
    check_paths(in_dir, out_dir)
    overrides = quantize_overrides(load_config(Path(in_dir) / "config.cfg", interpolate=False), scheme, in_dir)
    nlp = spacy.load(in_dir, config=overrides)
    encoders = [encoder_of(node) for _, proc in nlp.components if hasattr(proc, "model")
                for node in proc.model.walk() if is_spanbert_transformer(node)]
    unquantized = [enc for enc in encoders if enc.transformer is None or quantized_scheme(enc.transformer) != scheme]
    if not encoders or unquantized:
        raise ValueError(f"{in_dir}: its SpanBERT transformer has no saved weights to quantize; pass a trained "
                         f"pipeline directory such as training/model-best")
    sections = sorted({key.rsplit(".", 1)[0] for key in overrides})
    nlp.meta["spanbert_quantize"] = {"scheme": scheme, "source": str(in_dir), "models": sections}
    nlp.to_disk(out_dir)
    return {"scheme": scheme, "models": sections, "bytes_in": dir_size(in_dir), "bytes_out": dir_size(out_dir)}


@app.command(COMMAND)
def quantize_cli(
    # fmt: off
    in_dir: Path = Arg(..., help="Trained fp32 pipeline directory, e.g. training/model-best"),
    out_dir: Path = Arg(..., help="New directory for the int8 pipeline"),
    scheme: str = Opt("int8", "--scheme", "-s", help="int8 (a weight scale per output row) or int8_per_tensor (one per matrix)"),
    # fmt: on
):
    """Quantize a pipeline's SpanBERT transformer to int8 (dynamic, Linear layers) for faster CPU inference."""
    try:
        result = run_quantize(in_dir, out_dir, scheme)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        fail_with(err)
        return
    mb_in, mb_out = result["bytes_in"] / 1e6, result["bytes_out"] / 1e6
    msg.good(f"{', '.join(result['models'])}: {scheme}; {mb_in:.1f} MB -> {mb_out:.1f} MB on disk; saved to {out_dir}")

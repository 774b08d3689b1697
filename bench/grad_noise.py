"""Gradient noise of span-masked pretraining: what the 1.0 clip does at a CPU-sized update, and at the reference's.

Measured: the gradient at the mean loss's scale (the MLM and SBO cross-entropies summed over their targets,
divided by the masked tokens: grad_normalization = "masked_tokens"), at several update sizes, from one checkpoint,
with the run's own masking, dropout and precision. For an update of n masked tokens E|g_n|^2 = |G|^2 + tr(S)/n (G
the full-data gradient, S the noise of one masked token's gradient: an effective figure, since tokens of one block
are correlated; McCandlish et al. 2018, "An Empirical Model of Large-Batch Training", appendix A.1). The fit gives
the root-mean-square pre-clip norm at any update size: the run's, and the size where a clip of 1.0 stops firing.

The reference (facebookresearch/SpanBERT, pretraining/README.md: 32 GPUs x --max-tokens 4096, --clip-norm 1.0)
clips a smaller gradient: its criterion returns each micro-batch's MLM mean + SBO mean, and its fairseq trainer
(without --no-sample-size-normalization) multiplies the summed gradient by world size / the update's masked
tokens, so its pre-clip norm is the mean-loss norm divided by a GPU's masked tokens (about 614). The table gives
that norm too (grad_normalization = "reference" reproduces it). Nothing is updated: each draw is one forward and
backward pass.

    python bench/grad_noise.py RUN_DIR[:LABEL] ... [--sizes 4 16 64] [--draws 8 4 2] [--threads 2]

RUN_DIR is a `spacy spanbert-pretrain` output directory (its encoder/ and heads, config.cfg and packed data/) or
one of its checkpoints/step-N (then the run is two levels up).
"""
import argparse
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

if __package__ in (None, ""):  # run as `python bench/NAME.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (  # noqa: E402
    RESULTS_DIR, machine_info, machine_line, markdown_table, run_cli, write_json, write_text,
)

REFERENCE_GPUS, REFERENCE_GPU_TOKENS = 32, 4096  # the reference command: world size 32, --max-tokens 4096


def fit_noise(masked: Sequence[float], sq_norms: Sequence[float]) -> Tuple[float, float]:
    """Weighted least-squares fit of |g_n|^2 = signal + noise / n over the draws: (signal, noise).

    Weights n^2: a draw's squared norm varies about as (noise / n)^2, so small draws would otherwise dominate.
    signal estimates |G|^2 (it can come out negative when the noise swamps it; `rms_norm` then counts it as 0),
    noise estimates tr(S) per masked token."""
    if len(masked) < 2 or len(set(masked)) < 2:
        raise ValueError("fit_noise needs draws at two or more update sizes: pass --sizes with two values or more")
    xs, ws = [1.0 / n for n in masked], [float(n) ** 2 for n in masked]
    total = sum(ws)
    mx = sum(w * x for w, x in zip(ws, xs)) / total
    my = sum(w * y for w, y in zip(ws, sq_norms)) / total
    sxx = sum(w * (x - mx) ** 2 for w, x in zip(ws, xs))
    slope = sum(w * (x - mx) * (y - my) for w, x, y in zip(ws, xs, sq_norms)) / sxx
    return my - slope * mx, slope


def rms_norm(signal: float, noise: float, masked: float) -> float:
    """Root-mean-square gradient norm of an update of `masked` masked tokens (an upper bound on its mean norm)."""
    return math.sqrt(max(signal, 0.0) + noise / masked)


def clip_free_size(signal: float, noise: float, max_norm: float) -> Optional[float]:
    """Masked tokens per update above which the RMS norm falls below `max_norm` (None: never, on this fit)."""
    room = max_norm ** 2 - max(signal, 0.0)
    return noise / room if room > 0 else None


def run_paths(path: Path) -> Tuple[Path, Path]:
    """(encoder dir with its heads, run dir with config.cfg and data/) for a run or one of its checkpoints."""
    path = Path(path)
    run = path.parents[1] if path.parent.name == "checkpoints" else path
    for needed in (run / "config.cfg", run / "data" / "offsets.npy", path / "encoder"):
        if not needed.exists():
            raise FileNotFoundError(f"{needed} does not exist: pass a spanbert-pretrain output directory or one of "
                                    f"its checkpoints/step-N")
    return path / "encoder", run


def update_grad_sq_norm(model: Any, batch: Dict[str, Any], precision: str) -> Tuple[float, int]:
    """Squared norm, over every trainable parameter, of the gradient at the mean loss's scale (the summed MLM + SBO
    losses / masked tokens: grad_normalization "masked_tokens"); and the masked tokens it averages over."""
    import torch

    batch = {k: v for k, v in batch.items() if k != "mask_stats"}
    masked = int((batch["labels"] != -100).sum())
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        out = model(**batch)
    (out["loss_sum"] / max(masked, 1)).backward()
    sq = sum(float(p.grad.float().pow(2).sum()) for p in model.parameters() if p.grad is not None)
    return sq, masked


def measure(path: Path, label: str, sizes: Sequence[int], draws: Sequence[int], seed: int) -> Dict[str, Any]:
    """Draw `draws[i]` disjoint batches of `sizes[i]` blocks from the run's data; the fit and the norms per draw."""
    import numpy as np
    import torch
    from spacy.util import load_config, registry

    from spacy_spanbert.pretraining.collator import SpanMaskingCollator, corpus_token_counts
    from spacy_spanbert.pretraining.data import PackedBlocks
    from spacy_spanbert.pretraining.evaluate import load_trained
    from spacy_spanbert.pretraining.run import precision_flags
    from spacy_spanbert.pretraining.settings import training_settings

    encoder, run = run_paths(path)
    cfg = load_config(run / "config.cfg", interpolate=True)
    masking = registry.resolve({"masking": cfg["masking"]})["masking"]
    training = training_settings(cfg)
    if training.heads_warmup_steps:
        raise ValueError(f"{run} trains with heads_warmup_steps = {training.heads_warmup_steps}: its clipped "
                         f"gradient changes when the encoder thaws; measure a run without the heads warm-up")
    precision = "bf16" if precision_flags(training.precision, on_gpu=False)["bf16"] else "fp32"  # as on a CPU
    model, tokenizer = load_trained(encoder)
    model.train()  # dropout on, as in the steps the trainer clips
    blocks = PackedBlocks(run / "data")
    collator = SpanMaskingCollator.from_tokenizer(tokenizer, masking=masking, seed=seed,
                                                  max_sbo_targets=model.sbo_head.max_targets)
    collator.use_token_counts(corpus_token_counts(blocks.ids, int(model.decoder_weight.shape[0])))
    need = sum(s * d for s, d in zip(sizes, draws))
    if need > len(blocks):
        raise ValueError(f"{run} has {len(blocks)} blocks, fewer than the {need} the draws need: lower --sizes/--draws")
    order = np.random.default_rng(seed).permutation(len(blocks))
    torch.manual_seed(seed)
    rows, start, t0 = [], 0, time.perf_counter()
    for size, n_draws in zip(sizes, draws):
        for _ in range(n_draws):
            batch = collator([blocks[int(i)] for i in order[start : start + size]])
            start += size
            sq, masked = update_grad_sq_norm(model, batch, precision)
            rows.append({"blocks": size, "masked": masked, "grad_norm": math.sqrt(sq)})
            print(f"[{label}] {size} blocks, {masked} masked tokens: norm {math.sqrt(sq):.3f}", flush=True)
    signal, noise = fit_noise([r["masked"] for r in rows], [r["grad_norm"] ** 2 for r in rows])
    per_block = sum(r["masked"] for r in rows) / sum(r["blocks"] for r in rows)
    micro = per_block * training.batch_size  # masked tokens of one micro-batch on one process
    run_update = micro * training.grad_accum_steps
    run_norm = rms_norm(signal, noise, run_update)
    if training.grad_normalization == "reference":  # the mean losses' gradient over the update's masked tokens
        run_norm /= micro
    ref_gpu = REFERENCE_GPU_TOKENS * masking.mask_ratio
    ref_update = REFERENCE_GPUS * ref_gpu
    return {
        "label": label, "path": str(path), "precision": precision, "max_grad_norm": training.max_grad_norm,
        "grad_normalization": training.grad_normalization, "step": _step(path), "draws": rows,
        "signal_sq": signal, "noise": noise, "masked_per_block": per_block,
        "run_update_masked": run_update, "run_pre_clip_rms": run_norm,
        "reference_update_masked": ref_update, "reference_gpu_masked": ref_gpu,
        "mean_scale_rms_at_reference_update": rms_norm(signal, noise, ref_update),
        "reference_pre_clip_rms": rms_norm(signal, noise, ref_update) / ref_gpu,
        "clip_free_masked": clip_free_size(signal, noise, training.max_grad_norm),
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def _step(path: Path) -> Optional[int]:
    """The step of a checkpoint, or of a run's latest checkpoint (its encoder/ when the run finished)."""
    import json

    state = Path(path) / "trainer_state.json"
    if state.exists():
        return json.loads(state.read_text()).get("global_step")
    final = sorted(Path(path).glob("checkpoints/step-*"), key=lambda p: int(p.name.split("-")[1]))
    return int(final[-1].name.split("-")[1]) if final else None


def render_markdown(result: Dict[str, Any]) -> str:
    rows = []
    for r in result["runs"]:
        free = r["clip_free_masked"]
        signal = f"{r['signal_sq'] ** 0.5:.2f}" if r["signal_sq"] > 0 else "0 (fit below 0)"
        rows.append([
            r["label"], r["step"] if r["step"] is not None else "?", len(r["draws"]), signal, f"{r['noise']:,.0f}",
            f"{r['run_pre_clip_rms']:.3g} ({r['grad_normalization']}, {r['run_update_masked']:,.0f})",
            f"{r['mean_scale_rms_at_reference_update']:.2f}", f"{r['reference_pre_clip_rms']:.2g}",
            f"{free:,.0f}" if free is not None else "never",
        ])
    table = markdown_table(["run", "step", "draws", "|G|", "tr(S) per masked token",
                            "RMS pre-clip norm of the run's update (its normalisation, masked tokens)",
                            "mean-loss-scale RMS norm at the reference's update",
                            "the reference's RMS pre-clip norm (÷ a GPU's masked tokens)",
                            "masked tokens per update where a mean-loss-scale clip of 1.0 stops firing"], rows)
    s = result["settings"]
    first = result["runs"][0] if result["runs"] else {}
    return "\n".join([
        "### Gradient noise: the pre-clip norm against the update size", "",
        f"Each draw is one forward and backward pass on {' / '.join(map(str, s['sizes']))} packed blocks "
        f"({' / '.join(map(str, s['draws']))} draws), with the run's own masking, dropout and precision, from its "
        "checkpoint; nothing is updated. The squared norm of the gradient at the mean loss's scale (summed MLM + SBO "
        "losses / masked tokens) is fitted as |G|² + tr(S)/n over the draws' masked tokens n, weighted by n². The "
        f"reference's update: 32 GPUs × 4,096 tokens × the mask ratio = {first.get('reference_update_masked', 0):,.0f}"
        " masked tokens; its trainer divides the mean losses' gradient by the update's masked tokens times the world "
        f"size, i.e. by a GPU's {first.get('reference_gpu_masked', 0):,.0f}, before its 1.0 clip.", "",
        table, "",
        machine_line(result["machine"]),
        f"Rerun: `{result['command']}`",
    ])


def plot(result: Dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    lo = min(min(d["masked"] for d in r["draws"]) for r in result["runs"]) / 2
    hi = max(r["reference_update_masked"] for r in result["runs"]) * 2
    grid = np.geomspace(lo, hi, 200)
    for j, r in enumerate(result["runs"]):
        ax.scatter([d["masked"] for d in r["draws"]], [d["grad_norm"] for d in r["draws"]], s=12, color=f"C{j}")
        ax.plot(grid, [rms_norm(r["signal_sq"], r["noise"], n) for n in grid], color=f"C{j}", label=r["label"])
    first = result["runs"][0]
    ax.axhline(first["max_grad_norm"], color="k", ls="--", lw=1, label=f"clip ({first['max_grad_norm']:g})")
    for x, text, style in ((first["run_update_masked"], " this run's update", ":"),
                           (first["reference_update_masked"], " reference's update", "-.")):
        ax.axvline(x, color="grey", ls=style, lw=1)
        ax.text(x, ax.get_ylim()[1] * 0.8, text, fontsize=8)
    ax.set_title("gradient norm at the mean loss's scale")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("masked tokens per update")
    ax.set_ylabel("gradient norm (RMS fit; dots: draws)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="RUN_DIR or RUN_DIR/checkpoints/step-N, optionally :LABEL")
    p.add_argument("--sizes", nargs="+", type=int, default=[4, 16, 64], help="blocks per draw")
    p.add_argument("--draws", nargs="+", type=int, default=[8, 4, 2], help="draws per size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--output", type=Path, default=RESULTS_DIR / "grad_noise.json")
    args = p.parse_args(argv)
    if len(args.draws) != len(args.sizes) or len(set(args.sizes)) < 2:
        p.error("--sizes needs two different sizes or more, and --draws one count per size")
    if min(args.sizes + args.draws) < 1:
        p.error("--sizes and --draws must be at least 1")
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    specs: List[Tuple[Path, str]] = []
    for spec in args.runs:
        path, _, label = spec.partition(":")
        run_paths(Path(path))  # every input checked before the first model loads
        specs.append((Path(path), label or Path(path).name))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = {"benchmark": "grad_noise", "command": "python bench/grad_noise.py " + shlex.join(
        sys.argv[1:] if argv is None else argv), "settings": {"sizes": args.sizes, "draws": args.draws,
                                                              "seed": args.seed},
              "machine": machine_info(-1, args.threads), "runs": []}
    for path, label in specs:
        result["runs"].append(measure(path, label, args.sizes, args.draws, args.seed))
    write_json(args.output, result)
    write_text(args.output.with_suffix(".md"), render_markdown(result))
    plot(result, args.output.with_suffix(".png"))
    print(render_markdown(result))
    return result


if __name__ == "__main__":
    run_cli(main)

"""Gradient noise of span-masked pretraining: why the 1.0 clip fires on every step of a CPU-sized run.

The reference (facebookresearch/SpanBERT, pretraining/README.md) clips the gradient of the summed MLM + SBO losses
divided by the update's masked tokens at 1.0, on updates of 32 GPUs x 4,096 tokens: about 19,700 masked tokens.
A 2-core CPU run updates on a few hundred. For an update of n masked tokens, E|g_n|^2 = |G|^2 + tr(S)/n (G the
true gradient, S the per-token gradient covariance; McCandlish et al. 2018, "An Empirical Model of Large-Batch
Training", appendix A). Measuring |g_n|^2 at several n from one checkpoint, with the run's own masking and dropout,
fits both terms, and so gives the expected pre-clip norm at any update size: ours, the reference's, and the size at
which a clip of 1.0 stops firing. Nothing is updated: each draw is one forward and backward pass.

    python bench/grad_noise.py RUN_DIR[:LABEL] ... [--sizes 4 16 64] [--draws 8 4 2] [--threads 2]

RUN_DIR is a `spacy spanbert-pretrain` output directory (its encoder/ and heads, config.cfg and packed data/) or
one of its checkpoints/step-N (then the run is two levels up).
"""
import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

if __package__ in (None, ""):  # run as `python bench/NAME.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (  # noqa: E402
    RESULTS_DIR, machine_info, machine_line, markdown_table, run_cli, write_json, write_text,
)

REFERENCE_TOKENS = 32 * 4096  # tokens per update in the reference command (world size 32, max-tokens 4096)
MASK_RATIO = 0.15


def fit_noise(masked: Sequence[float], sq_norms: Sequence[float]) -> Tuple[float, float]:
    """Least-squares fit of |g_n|^2 = signal + noise / n over the draws: (signal, noise).

    signal estimates |G|^2 (can come out slightly negative when the noise swamps it; it is then clipped to 0 by the
    callers that take square roots), noise estimates tr(S) in masked tokens."""
    xs = [1.0 / n for n in masked]
    n = len(xs)
    if n < 2 or len(set(xs)) < 2:
        raise ValueError("fit_noise needs draws at two or more update sizes: pass --sizes with two values or more")
    mx, my = sum(xs) / n, sum(sq_norms) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, sq_norms)) / sxx
    return my - slope * mx, slope


def expected_norm(signal: float, noise: float, masked: float) -> float:
    return math.sqrt(max(signal, 0.0) + noise / masked)


def clip_free_size(signal: float, noise: float, max_norm: float) -> Optional[float]:
    """Masked tokens per update above which the expected norm falls below `max_norm` (None: never, on this fit)."""
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
    """Squared norm of the reference's update gradient (summed losses / masked tokens) over every trainable
    parameter, as the trainer clips it; and the masked tokens it averages over."""
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
            print(f"[{label}] {size} blocks, {masked} masked tokens: pre-clip norm {math.sqrt(sq):.3f}", flush=True)
    signal, noise = fit_noise([r["masked"] for r in rows], [r["grad_norm"] ** 2 for r in rows])
    ours = training.batch_size * training.grad_accum_steps * training.max_length * MASK_RATIO
    reference = REFERENCE_TOKENS * MASK_RATIO
    return {
        "label": label, "path": str(path), "precision": precision, "max_grad_norm": training.max_grad_norm,
        "step": _step(path), "draws": rows, "signal_sq": signal, "noise": noise,
        "run_update_masked": ours, "reference_update_masked": reference,
        "norm_at_run_update": expected_norm(signal, noise, ours),
        "norm_at_reference_update": expected_norm(signal, noise, reference),
        "clip_free_masked": clip_free_size(signal, noise, training.max_grad_norm),
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def _step(path: Path) -> Optional[int]:
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
        rows.append([
            r["label"], r["step"] if r["step"] is not None else "?", len(r["draws"]),
            f"{max(r['signal_sq'], 0.0) ** 0.5:.2f}", f"{r['noise']:,.0f}",
            f"{r['norm_at_run_update']:.2f} ({r['run_update_masked']:,.0f})",
            f"{r['norm_at_reference_update']:.2f} ({r['reference_update_masked']:,.0f})",
            f"{free:,.0f}" if free is not None else "never",
        ])
    table = markdown_table(["run", "step", "draws", "|G| (signal)", "tr(S) (noise)",
                            "expected norm at the run's update (masked tokens)",
                            "at the reference's update (masked tokens)",
                            f"masked tokens per update where the clip stops firing"], rows)
    s = result["settings"]
    return "\n".join([
        "### Gradient noise: the pre-clip norm against the update size (why the clip fires on CPU-sized steps)", "",
        f"Each draw is one forward and backward pass on {', '.join(map(str, s['sizes']))} packed blocks "
        f"({', '.join(map(str, s['draws']))} draws), with the run's own masking, dropout and precision, from the "
        "run's checkpoint; nothing is updated. The squared norm of the reference's update gradient (summed MLM + SBO "
        "losses / masked tokens) is fitted as |G|² + tr(S)/n over the draws' masked tokens n. The reference's update: "
        "32 GPUs × 4,096 tokens × 15%.", "",
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
        ax.plot(grid, [expected_norm(r["signal_sq"], r["noise"], n) for n in grid], color=f"C{j}", label=r["label"])
    first = result["runs"][0]
    ax.axhline(first["max_grad_norm"], color="k", ls="--", lw=1, label=f"clip ({first['max_grad_norm']:g})")
    ax.axvline(first["run_update_masked"], color="grey", ls=":", lw=1)
    ax.axvline(first["reference_update_masked"], color="grey", ls="-.", lw=1)
    ax.text(first["run_update_masked"], ax.get_ylim()[1] * 0.9, " this run's update", fontsize=8)
    ax.text(first["reference_update_masked"], ax.get_ylim()[1] * 0.9, " reference", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("masked tokens per update")
    ax.set_ylabel("pre-clip gradient norm")
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
    result = {"benchmark": "grad_noise", "command": "python bench/grad_noise.py " + " ".join(
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

"""Results of bench/pretraining_payoff.py: the encoders compared, seed statistics, the issue's goal, table and plot.

Why apart from the runner: these parts are pure (a result dict in, text or a PNG out), so the report can be redrawn
from a committed JSON and tested without training anything:

    python bench/payoff_report.py bench/results/pretraining_payoff.json   # rewrite the .md and .png beside it
"""
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

if __package__ in (None, ""):  # run as `python bench/NAME.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    fmt_duration, fmt_stat, machine_line, markdown_table, reused_note, shown, summarize,
)
from bench.ner_runs import summarize_runs  # noqa: E402

# encoder name -> (masking.scheme, objective.sbo_weight); None = MiniLM as shipped
ENCODERS: Dict[str, Optional[Tuple[str, float]]] = {
    "minilm": None,
    "subword_mlm": ("subword", 0.0),
    "span_sbo": ("span", 1.0),
}
LABELS = {"minilm": "MiniLM as shipped", "subword_mlm": "+ subword MLM", "span_sbo": "+ span masking + SBO"}
HELDOUT_SCHEMES = ("span", "subword")  # every pretrained encoder is scored under both maskings (same seeded masks)
GOAL_GAIN = 0.01  # the issue's goal: span + SBO at least 1.0 F above MiniLM as shipped


def summarize_grid(runs: Dict[str, Dict[str, List[Dict[str, Any]]]]) -> Dict[str, Dict[str, Any]]:
    """Per size and encoder: seed statistics of the finished fine-tuning runs (bench.ner_runs.summarize_runs)."""
    return {size: {enc: summarize_runs(rs) for enc, rs in by_enc.items()} for size, by_enc in runs.items()}


def goal_checks(summary: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The issue's goal, per size: span_sbo >= minilm + 1.0 F, and span_sbo >= subword_mlm; from the seed means."""
    checks = []
    for size, by_enc in summary.items():
        f = {enc: (s.get("f") or {}) for enc, s in by_enc.items()}
        span = f.get("span_sbo", {}).get("mean")
        for other, need, claim in (("minilm", GOAL_GAIN, "span + SBO >= MiniLM as shipped + 1.0 F"),
                                   ("subword_mlm", 0.0, "span + SBO >= subword MLM")):
            base = f.get(other, {}).get("mean")
            if span is None or base is None:
                continue
            spread = (f["span_sbo"].get("std", 0.0) + f[other].get("std", 0.0)) if min(
                f["span_sbo"].get("n", 1), f[other].get("n", 1)) > 1 else None
            checks.append({"size": size, "claim": claim, "diff_f": span - base, "met": span - base >= need - 1e-9,
                           "n": min(f["span_sbo"]["n"], f[other]["n"]), "std_sum": spread})
    return checks


def verdict(checks: Sequence[Dict[str, Any]]) -> str:
    """One plain sentence per check, built from the numbers."""
    if not checks:
        return "No size has finished runs of span + SBO and a baseline yet: nothing to judge."
    parts = []
    for c in checks:
        noise = "" if c["std_sum"] is None else (
            " (within seed spread)" if abs(c["diff_f"]) <= c["std_sum"] else " (beyond seed spread)")
        parts.append(f"{c['size']}: {c['claim']}: {'met' if c['met'] else 'NOT met'}, "
                     f"{100 * c['diff_f']:+.1f} F over {c['n']} seed(s){noise}.")
    return " ".join(parts)


CURVE_KEYS = ("step", "mlm_loss", "sbo_loss", "grad_norm", "grad_norm_max", "clipped_share", "lr")


def training_curve(entries: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The logged training points of a pretraining run, one per step (a resumed run logs some steps twice: the
    later entry wins)."""
    by_step = {e["step"]: {k: e.get(k) for k in CURVE_KEYS} for e in entries if "mlm_loss" in e and "step" in e}
    return [by_step[k] for k in sorted(by_step)]


def clipping_summary(curve: Sequence[Dict[str, Any]], warmup: int, max_norm: float) -> Optional[Dict[str, Any]]:
    """How often the clip fired over the whole run (each logged share weighted by the steps it covers) and the
    pre-clip norm after warm-up (the last step of each logging window)."""
    points = [c for c in curve if c.get("clipped_share") is not None]
    if not points:
        return None
    covered = [c["step"] - prev for c, prev in zip(points, [0] + [c["step"] for c in points[:-1]])]
    after = [c["grad_norm"] for c in points if c["step"] > warmup and c.get("grad_norm") is not None]
    return {"max_grad_norm": max_norm, "steps": points[-1]["step"],
            "clipped_share": sum(c["clipped_share"] * n for c, n in zip(points, covered)) / max(sum(covered), 1),
            "norm_after_warmup": summarize(after),
            "norm_after_warmup_range": [min(after), max(after)] if after else None}


def clipping_lines(result: Dict[str, Any]) -> List[str]:
    lines = []
    for enc in ENCODERS:
        c = ((result["encoders"].get(enc) or {}).get("pretrain") or {}).get("clipping")
        if not c:
            continue
        norm = c["norm_after_warmup"] or {}
        lo, hi = c["norm_after_warmup_range"] or (None, None)
        lines.append(f"Clipping, {LABELS[enc]} (max_grad_norm {c['max_grad_norm']:g}): fired on "
                     f"{100 * c['clipped_share']:.0f}% of {c['steps']:,} steps; pre-clip norm after warm-up "
                     + (f"{norm['mean']:.2f} on average (logged steps, {lo:.2f}–{hi:.2f})." if norm else "not logged."))
    return lines


def render_markdown(result: Dict[str, Any]) -> str:
    """The results table (F per encoder per size, mean ± std over seeds), the pretraining facts and the verdict."""
    s = result["settings"]
    sizes = list(result["subsets"])
    rows = []
    for enc in ENCODERS:
        info = result["encoders"].get(enc, {})
        pre = info.get("pretrain") or {}
        held = info.get("heldout") or {}
        cells = []
        for size in sizes:
            summ = (result["summary"].get(size) or {}).get(enc) or {}
            cells.append(f"{fmt_stat(summ.get('f'))} (n={summ.get('n_ok', 0)})")
        loss = [f"{held[h]['mlm_loss']:.2f} / {held[h]['sbo_loss']:.2f}" if held.get(h, {}).get("mlm_loss") else "–"
                for h in HELDOUT_SCHEMES]
        tokens = f"{pre['tokens']:,}" if pre.get("tokens") else ("0" if ENCODERS[enc] is None else "–")
        rate = (pre.get("tokens_per_s") or {}).get("mean")
        rows.append([LABELS[enc], *cells, tokens, pre.get("steps", 0 if ENCODERS[enc] is None else "–"),
                     fmt_duration(pre.get("wall_s")) + (" (resumed part only)" if pre.get("resumed") else "")
                     + (f" ({rate:,.0f} tok/s)" if rate else ""), *loss])
    table = markdown_table(["encoder", *[f"test F @ {k} train" for k in sizes], "pretraining tokens", "steps",
                            "pretraining time", *[f"held-out MLM / SBO loss ({h} masks)" for h in HELDOUT_SCHEMES]],
                           rows)
    subsets = "; ".join(f"{k}: {v['docs']} of {v['of_docs']} chunks, {v['words']:,} words, {v['entities']:,} "
                        f"entities, {s['steps'][k]} steps" for k, v in result["subsets"].items())
    ft = [r for by_enc in result["runs"].values() for rs in by_enc.values() for r in rs if r.get("status") == "ok"]
    ft_time = summarize([r["train_wall_s"] + r.get("eval_wall_s", 0.0) for r in ft])
    n_reused = sum(1 for r in ft if r.get("reused")) + sum(
        1 for info in result["encoders"].values() if (info.get("pretrain") or {}).get("reused"))
    title = (f"Does pretraining help? spanbert_ner on CoNLL-2003 train subsets from three encoders, "
             f"{s['pretrain_tokens']:,} tokens of continued pretraining")
    title += "" if result.get("finished") else " (in progress)"
    text = result["text"]
    lines = [
        f"### {title}", "",
        f"Continued pretraining: {s['pretrain_steps']} steps × {s['pretrain_batch_size']} sequences × "
        f"{s['pretrain_max_length']} tokens per scheme (the same ≤ {s['pretrain_tokens']:,} tokens), lr "
        f"{s['pretrain_lr']:g}, warmup a tenth, {s['precision']}, head_lr_factor {s['head_lr_factor']:g}, seed "
        f"{s['pretrain_seed']}, on {text.get('news_words', 0):,} words of news (CoNLL overlaps removed) + "
        f"{text.get('conll_train_words', 0):,} words of CoNLL-2003 train text ({text.get('conll_train_docs', 0)} "
        f"documents; never dev or test). Fine-tuning: spanbert_ner (configs/ner.cfg) on a fixed random subset of the "
        f"train chunks per size, the same for every encoder ({subsets}); warmup a tenth of the steps, seeds "
        f"{s['seeds']}, {s['threads_per_job']} thread(s) per job, {s['parallel']} jobs at a time; test F on the whole "
        f"CoNLL-2003 test split, in %, mean ± sample std over seeds (n = finished seeds). Held-out loss: "
        f"{s['heldout_blocks']} blocks of the project's 100 held-out news documents, the run's own masking with the "
        "named scheme's spans, the same seeded masks for both encoders (MiniLM ships no MLM head, so it has none).",
        "", table, "",
        f"**Goal (issue 10): span + SBO ≥ 1.0 F above MiniLM as shipped at every small size, and ≥ subword MLM at "
        f"every size.** {result['verdict']}", "",
        *clipping_lines(result), *([""] if clipping_lines(result) else []),
        *[f"Not run: {n}" for n in result.get("not_run", [])[:12]],
        *([f"... and {len(result['not_run']) - 12} more not run."] if len(result.get("not_run", [])) > 12 else []),
        f"Fine-tuning job (train + test evaluation): {fmt_duration((ft_time or {}).get('mean'))} on average over "
        f"{len(ft)} runs. Wall time of this invocation {fmt_duration(result['wall_s'])}"
        + reused_note(n_reused)
        + f". {machine_line(result['machine'])}",
        f"Rerun: `{shown(result['command'])}`",
    ]
    return "\n".join(lines)


def plot(result: Dict[str, Any], png: Path) -> None:
    """Test F against train size per encoder (seed mean, min-max whiskers, one dot per seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    sizes = list(result["subsets"])
    for j, enc in enumerate(ENCODERS):
        xs, means, lo, hi = [], [], [], []
        for size in sizes:
            vals = [100 * r["f"] for r in result["runs"].get(size, {}).get(enc, []) if r.get("status") == "ok"]
            if not vals:
                continue
            x = result["subsets"][size]["percent"] * (1 + 0.04 * (j - 1))  # small offsets so whiskers do not overlap
            m = sum(vals) / len(vals)
            xs.append(x), means.append(m), lo.append(m - min(vals)), hi.append(max(vals) - m)
            ax.scatter([x] * len(vals), vals, s=10, color=f"C{j}", alpha=0.6)
        if xs:
            ax.errorbar(xs, means, yerr=[lo, hi], marker="o", capsize=4, color=f"C{j}", label=LABELS[enc])
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks([v["percent"] for v in result["subsets"].values()])
    ax.set_xticklabels(sizes)
    ax.set_xlabel("share of CoNLL-2003 train documents")
    ax.set_ylabel("CoNLL-2003 test F1 (%)")
    ax.set_title(f"spanbert_ner after {result['settings']['pretrain_tokens']:,} tokens of continued pretraining")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)


def plot_curves(result: Dict[str, Any], png: Path) -> bool:
    """Training MLM / SBO loss and pre-clip gradient norm against steps, per pretrained encoder; False when no run
    logged a curve."""
    runs = [(enc, ((result["encoders"].get(enc) or {}).get("pretrain") or {}).get("curve")) for enc in ENCODERS]
    runs = [(enc, curve) for enc, curve in runs if curve]
    if not runs:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, norm_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    clip = None
    for enc, curve in runs:
        j = list(ENCODERS).index(enc)
        steps = [c["step"] for c in curve]
        loss_ax.plot(steps, [c["mlm_loss"] for c in curve], color=f"C{j}", label=f"{LABELS[enc]}: MLM")
        if ENCODERS[enc][1]:  # type: ignore[index]  # the SBO loss only means something where it is trained
            loss_ax.plot(steps, [c["sbo_loss"] for c in curve], color=f"C{j}", ls="--", label=f"{LABELS[enc]}: SBO")
        norm_ax.plot(steps, [c["grad_norm_max"] for c in curve], color=f"C{j}", lw=0.8, alpha=0.5)
        norm_ax.plot(steps, [c["grad_norm"] for c in curve], color=f"C{j}", label=LABELS[enc])
        clip = (result["encoders"][enc]["pretrain"].get("clipping") or {}).get("max_grad_norm", clip)
    if clip:
        norm_ax.axhline(clip, color="k", ls="--", lw=1, label=f"clip ({clip:g})")
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("training loss (per-token cross-entropy)")
    loss_ax.set_title("training loss")
    norm_ax.set_yscale("log")
    norm_ax.set_xlabel("step")
    norm_ax.set_ylabel("pre-clip gradient norm")
    norm_ax.set_title("pre-clip gradient norm (line: each logged step; faint: window maximum)", fontsize=9)
    for ax in (loss_ax, norm_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return True


def curves_png(json_path: Path) -> Path:
    return Path(json_path).with_name(Path(json_path).stem + "_curves.png")


def redraw(json_path: Path) -> None:
    """Rewrite the Markdown and the PNG beside a results JSON from its contents."""
    if not Path(json_path).exists():
        raise FileNotFoundError(f"{json_path} does not exist: run bench/pretraining_payoff.py first")
    result = json.loads(Path(json_path).read_text(encoding="utf8"))
    Path(json_path).with_suffix(".md").write_text(render_markdown(result) + "\n", encoding="utf8")
    plot(result, Path(json_path).with_suffix(".png"))
    plot_curves(result, curves_png(json_path))


if __name__ == "__main__":
    try:
        redraw(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results" / "pretraining_payoff.json")
    except FileNotFoundError as err:
        sys.exit(f"error: {err}")

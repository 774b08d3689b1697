"""Held-out MLM and SBO loss against steps for a head-less checkpoint (MiniLM): before vs after the head fixes.

Why: MiniLM ships no MLM head, so continued pretraining starts the MLM and SBO heads fresh. How fast they become
useful decides whether a short pretraining run can pay off at all. Variants, at equal data order, steps and seed:
  before            PyTorch-default head init (SBO position embeddings N(0, 1), non-zero biases) and the old update
                    (gradient of the mean loss clipped at 1.0, which fires on every step)
  init_fix          BERT's head init (the reference's), old update
  after             BERT's head init and the reference's sample-size normalised update (the new default)
  after_head_lr_N   the new default with the heads at N x the learning rate (`head_lr_factor`)
  reference[_head_lr_N]  BERT's head init and SpanBERT's own update (grad_normalization = "reference": the mean
                    losses' gradient over the masked tokens, which the 1.0 clip leaves alone)
  ..._clip_X        any of the above with the gradient clipped at X instead of 1.0 (`clip_1e9`: never clipped)
The held-out loss is measured on fixed, seeded masks of held-out news blocks every --eval-every steps.

    OMP_NUM_THREADS=1 python bench/pretrain_loss_curves.py --raw-text corpus/pretrain.txt \
        --heldout corpus/pretrain_heldout.txt --init-model assets/all-MiniLM-L6-v2
"""
import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

if __package__ in (None, ""):  # run as `python bench/NAME.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import RESULTS_DIR, ROOT, machine_info, machine_line, markdown_table, write_json, write_text  # noqa: E402

from transformers import TrainerCallback  # noqa: E402


TITLE = "Held-out MLM / SBO loss of a head-less checkpoint against steps (before vs after the head fixes)"


def torch_default_heads(model) -> None:
    """Re-initialise the heads as PyTorch does by default: the head init before the fix."""
    for head in (model.mlm_head, model.sbo_head):
        for sub in head.modules():
            if isinstance(sub, (torch.nn.Linear, torch.nn.LayerNorm, torch.nn.Embedding)):
                sub.reset_parameters()


class HeldoutCurve(TrainerCallback):
    """Token-weighted held-out MLM and SBO loss of the in-memory model, at step 0 and every `every` steps."""

    def __init__(self, batches: List[Dict[str, torch.Tensor]], every: int) -> None:
        self.batches, self.every, self.points = batches, every, []

    def measure(self, model, step: int) -> None:
        from spacy_spanbert.pretraining.evaluate import heldout_losses

        losses = heldout_losses(model, self.batches)
        self.points.append({"step": step, "mlm_loss": round(losses["mlm_loss"], 4),
                            "sbo_loss": round(losses["sbo_loss"], 4)})
        print(f"  step {step}: held-out MLM {self.points[-1]['mlm_loss']:.3f} SBO {self.points[-1]['sbo_loss']:.3f}",
              flush=True)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.measure(model, state.global_step)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            self.measure(model, state.global_step)


def heldout_batches(tokenizer, heldout: Path, args, work: Path, max_sbo_targets: int) -> List[Dict]:
    from spacy_spanbert.pretraining.collator import SpanMaskingCollator
    from spacy_spanbert.pretraining.data import PackedBlocks, pack_corpus

    blocks = PackedBlocks(pack_corpus(heldout, tokenizer, args.max_length, work / "heldout"))
    collator = SpanMaskingCollator.from_tokenizer(tokenizer, seed=0, max_sbo_targets=max_sbo_targets)
    n = min(args.heldout_blocks, len(blocks))
    batches = [collator([blocks[i] for i in range(a, min(a + 8, n))]) for a in range(0, n, 8)]
    for batch in batches:
        batch.pop("mask_stats")
    return batches


def parse_variant(name: str) -> Dict[str, Any]:
    """before | init_fix | after | reference, then optionally _head_lr_N, then optionally _clip_X: what the run
    changes."""
    base, has_clip, clip = name.partition("_clip_")
    base, has_head_lr, head_lr = base.partition("_head_lr_")
    try:
        if base not in ("before", "init_fix", "after", "reference") or (has_head_lr and base in ("before", "init_fix")):
            raise ValueError
        normalization = {"after": "masked_tokens", "reference": "reference"}.get(base, "mean")
        return {"torch_default_heads": base == "before", "normalization": normalization,
                "head_lr_factor": float(head_lr) if has_head_lr else 1.0,
                "max_grad_norm": float(clip) if has_clip else 1.0}
    except ValueError:
        raise ValueError(f"unknown variant {name!r}: use before, init_fix, after, reference, after_head_lr_N or "
                         f"reference_head_lr_N, each optionally followed by _clip_X") from None


def run_variant(name: str, args, tokenizer, dataset, heldout: List[Dict]) -> Dict[str, Any]:
    from transformers import TrainingArguments, set_seed

    from spacy_spanbert.pretraining.collator import SpanMaskingCollator
    from spacy_spanbert.pretraining.model import SpanBertForPretraining
    from spacy_spanbert.pretraining.trainer import EpochCallback, SpanBertTrainer

    print(f"[{name}]", flush=True)
    set_seed(args.seed)
    variant = parse_variant(name)
    model = SpanBertForPretraining.from_pretrained(args.init_model)
    if variant["torch_default_heads"]:
        torch_default_heads(model)
    head_lr = variant["head_lr_factor"]
    collator = SpanMaskingCollator.from_tokenizer(tokenizer, seed=args.seed, max_sbo_targets=model.sbo_head.max_targets)
    out = args.work_dir / name
    targs = TrainingArguments(
        output_dir=str(out), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr, weight_decay=0.01, warmup_steps=args.warmup, lr_scheduler_type="linear",
        optim="adamw_torch", max_grad_norm=variant["max_grad_norm"], logging_steps=args.eval_every,
        save_strategy="no", seed=args.seed, data_seed=args.seed, report_to=[], remove_unused_columns=False,
        use_cpu=True, disable_tqdm=True, bf16=args.precision == "bf16")
    curve = HeldoutCurve(heldout, args.eval_every)
    trainer = SpanBertTrainer(model=model, args=targs, train_dataset=dataset, data_collator=collator,
                              callbacks=[EpochCallback(collator), curve], run_dir=out, keep_checkpoints=1,
                              save_tokenizer=tokenizer, head_lr_factor=head_lr,
                              grad_normalization=variant["normalization"])
    t0 = time.perf_counter()
    trainer.train()
    if args.save_encoders:  # for fine-tuning from each variant afterwards (`--paths.init_model DIR`)
        model.save_encoder(out / "encoder", tokenizer)
    train_log = [{k: r[k] for k in ("step", "loss", "mlm_loss", "sbo_loss", "grad_norm", "grad_norm_max",
                                    "clipped_share") if k in r} for r in trainer.state.log_history if "loss" in r]
    return {"variant": name, **variant, "curve": curve.points, "train_log": train_log,
            "wall_s": round(time.perf_counter() - t0, 1)}


def plot(result: Dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for run in result["runs"]:
        steps = [p["step"] for p in run["curve"]]
        for ax, key in zip(axes, ("mlm_loss", "sbo_loss")):
            ax.plot(steps, [p[key] for p in run["curve"]], marker="o", label=run["variant"])
    for ax, title in zip(axes, ("held-out MLM loss", "held-out SBO loss")):
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("cross-entropy (nats)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"MiniLM continued pretraining, batch {result['batch_size']} x {result['max_length']}, "
                 f"lr {result['lr']}, warm-up {result['warmup']}")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def render(result: Dict[str, Any]) -> str:
    steps = [p["step"] for p in result["runs"][0]["curve"]]
    rows = []
    for run in result["runs"]:
        clipped = [r["clipped_share"] for r in run["train_log"] if "clipped_share" in r]
        norms = [r["grad_norm"] for r in run["train_log"] if r.get("grad_norm") is not None]
        rows.append([run["variant"]] + [f"{p['mlm_loss']:.2f} / {p['sbo_loss']:.2f}" for p in run["curve"]]
                    + [f"{sum(clipped) / max(len(clipped), 1):.0%}",
                       f"{min(norms):.3g}-{max(norms):.3g}" if norms else "-"])
    return "\n".join([
        f"### {result.get('title') or TITLE}", "",
        f"Command: `{result['command']}`", "",
        markdown_table(["variant"] + [f"step {s}" for s in steps] + ["steps clipped", "logged grad norm"], rows),
        "", machine_line(result["machine"]),
    ]) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw-text", type=Path, default=ROOT / "corpus" / "pretrain.txt")
    p.add_argument("--heldout", type=Path, default=ROOT / "corpus" / "pretrain_heldout.txt")
    p.add_argument("--init-model", default=str(ROOT / "assets" / "all-MiniLM-L6-v2"))
    p.add_argument("--variants", nargs="+", default=["before", "init_fix", "after", "after_head_lr_10"])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--eval-every", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--heldout-blocks", type=int, default=24)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16: autocast on the CPU")
    p.add_argument("--title", default=TITLE, help="heading of the Markdown table")
    p.add_argument("--save-encoders", action="store_true", help="save each variant's encoder to WORK_DIR/VARIANT/encoder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", type=Path, default=ROOT / "bench" / "work" / "loss_curves")
    p.add_argument("--output", type=Path, default=RESULTS_DIR / "pretrain_loss_curves.json")
    args = p.parse_args(argv)
    for path in (args.raw_text, args.heldout, Path(args.init_model)):
        if not path.exists():
            p.error(f"{path} does not exist: run `spacy project run fetch` and `corpus` first, or pass its path")
    for name in args.variants:
        try:
            parse_variant(name)
        except ValueError as err:
            p.error(str(err))
    torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer

    from spacy_spanbert.pretraining.data import PackedBlocks, pack_corpus

    tokenizer = AutoTokenizer.from_pretrained(args.init_model)
    dataset = PackedBlocks(pack_corpus(args.raw_text, tokenizer, args.max_length, args.work_dir / "data"))
    heldout = heldout_batches(tokenizer, args.heldout, args, args.work_dir, 15)
    result = {"command": "python bench/pretrain_loss_curves.py " + shlex.join(argv or sys.argv[1:]),
              "machine": machine_info(threads=args.threads), "batch_size": args.batch_size,
              "max_length": args.max_length, "lr": args.lr, "warmup": args.warmup, "steps": args.steps,
              "precision": args.precision, "title": args.title,
              "heldout_blocks": min(args.heldout_blocks, sum(len(b["input_ids"]) for b in heldout)),
              "runs": [run_variant(v, args, tokenizer, dataset, heldout) for v in args.variants]}
    write_json(args.output, result)
    plot(result, args.output.with_suffix(".png"))
    write_text(args.output.with_suffix(".md"), render(result))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does a heads-only warm-up help continued pretraining? Same run with and without it, then held-out loss.

Why: a checkpoint without an MLM head (MiniLM) starts the MLM and SBO heads from random weights, whose first
gradients are noise for a good encoder. `training.heads_warmup_steps` freezes the encoder for the first N steps.
This script pretrains twice at equal steps, tokens and seed, differing only in that setting, and compares the
held-out masked-LM and SBO loss (same seeded masks for both), so the default in project.yml rests on a measurement.

    python bench/heads_warmup.py --steps 250 --warmups 0 100
"""
import argparse
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

if __package__ in (None, ""):  # run as `python bench/NAME.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import RESULTS_DIR, ROOT, machine_info, machine_line, markdown_table, run_logged  # noqa: E402
from bench.common import spacy_cmd, write_json, write_text  # noqa: E402


def run(warmup: int, args: argparse.Namespace) -> Dict[str, Any]:
    from spacy_spanbert.pretraining.evaluate import heldout_mlm_loss

    out = args.work_dir / f"warmup-{warmup}"
    cmd = spacy_cmd("spanbert-pretrain", ROOT / "configs" / "pretrain.cfg", out, "--paths.raw_text", args.raw_text,
                    "--paths.init_model", args.init_model, "--training.max_steps", args.steps,
                    "--training.batch_size", args.batch_size, "--training.max_length", args.max_length,
                    "--training.learning_rate", args.lr, "--training.warmup_steps", args.lr_warmup,
                    "--training.heads_warmup_steps", warmup, "--training.progress_bar", "false",
                    "--system.seed", args.seed)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    result = run_logged(cmd, args.work_dir / f"warmup-{warmup}.log", prefix=f"[warmup {warmup}] ")
    record: Dict[str, Any] = {"heads_warmup_steps": warmup, "wall_s": result.wall_s, "ok": result.ok}
    if result.ok:
        record["heldout"] = heldout_mlm_loss(out / "encoder", args.heldout, scheme="span",
                                             max_length=args.max_length, max_blocks=args.heldout_blocks, seed=0)
    else:
        record["error"] = result.tail[-500:]
    return record


def render(result: Dict[str, Any]) -> str:
    rows = [[r["heads_warmup_steps"], f"{r['heldout']['mlm_loss']:.3f}" if r.get("heldout") else "failed",
             f"{r['heldout']['sbo_loss']:.3f}" if r.get("heldout") else "–", f"{r['wall_s']:.0f}s"]
            for r in result["runs"]]
    return "\n".join([
        "### Heads-only warm-up (continued pretraining of MiniLM, held-out news text)", "",
        f"Command: `{result['command']}`", "",
        markdown_table(["encoder frozen for first N steps", "held-out MLM loss", "held-out SBO loss", "wall time"],
                       rows),
        "", machine_line(result["machine"]),
    ]) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw-text", type=Path, default=ROOT / "corpus" / "pretrain.txt")
    p.add_argument("--heldout", type=Path, default=ROOT / "corpus" / "pretrain_heldout.txt")
    p.add_argument("--init-model", default="assets/all-MiniLM-L6-v2")
    p.add_argument("--warmups", type=int, nargs="+", default=[0, 100])
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--lr-warmup", type=int, default=50)
    p.add_argument("--heldout-blocks", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", type=Path, default=ROOT / "bench" / "work" / "heads_warmup")
    p.add_argument("--output", type=Path, default=RESULTS_DIR / "heads_warmup.json")
    args = p.parse_args(argv)
    for path in (args.raw_text, args.heldout):
        if not path.exists():
            p.error(f"{path} does not exist: run `spacy project run corpus` first or pass --raw-text/--heldout")
    result = {"command": "python bench/heads_warmup.py " + " ".join(argv or sys.argv[1:]), "machine": machine_info(),
              "runs": [run(w, args) for w in args.warmups]}
    write_json(args.output, result)
    write_text(args.output.with_suffix(".md"), render(result))
    print(render(result))
    return 0 if all(r["ok"] for r in result["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())

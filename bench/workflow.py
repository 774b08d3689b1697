"""Run one of the project's workflows (`all`, `rel`, `textcat`) step by step, as a user would, and record each step's wall time and the metrics.

Why: the README reports what `spacy project run all` costs and reaches on the embedded default; those figures must
come from a script anyone can rerun. Each step runs through `spacy project run STEP` (so its deps/outputs and vars
are exactly the user's), forced to rerun so the timing is real, and the metrics are read back from the files the
workflow itself writes (metrics/ner_test.json, metrics/pretrain_heldout.json, metrics/rel_test.json,
metrics/textcat_test.json).

Usage: python bench/workflow.py [--workflow all|rel|textcat] [--vars.NAME VALUE ...] [--skip fetch]
       [--output bench/results/workflow.json]
"""
import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

if __package__ in (None, ""):  # run as `python bench/NAME.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    RESULTS_DIR, ROOT, fmt_duration, machine_info, machine_line, markdown_table, run_logged, spacy_cmd, write_results,
)

WORKFLOWS = {
    "all": ("precision", "fetch", "convert", "corpus", "pretrain", "train", "evaluate", "package"),
    "rel": ("precision", "rel_fetch", "rel_convert", "rel_train", "rel_evaluate", "rel_package"),
    "textcat": ("precision", "fetch", "textcat_convert", "textcat_train", "textcat_evaluate", "textcat_package",
                "textcat_report"),
}
METRICS = {"all": "ner_test.json", "rel": "rel_test.json", "textcat": "textcat_test.json"}


def run_workflow(steps: Sequence[str], overrides: Sequence[str], log_dir: Path) -> List[Dict[str, Any]]:
    """Run each step forced; stop at the first failure (later steps depend on it), keeping what was measured."""
    records = []
    for step in steps:
        result = run_logged(spacy_cmd("project", "run", step, ".", "--force", *overrides), log_dir / f"{step}.log",
                            prefix=f"[{step}] ")
        records.append({"step": step, "wall_s": round(result.wall_s, 1), "ok": result.ok})
        if not result.ok:
            records[-1]["error"] = result.tail[-500:]
            break
    return records


def read_json(path: Path) -> Optional[Dict[str, Any]]:
    return json.loads(path.read_text()) if path.exists() else None


def _score_table(metrics: Dict[str, Any]) -> str:
    rows = [[label, *(f"{100 * v[k]:.1f}" for k in ("p", "r", "f"))] for label, v in metrics["per_type"].items()]
    rows.append(["**overall**", *(f"**{100 * metrics['overall'][k]:.1f}**" for k in ("p", "r", "f"))])
    return markdown_table(["type", "P", "R", "F"], rows)


def render(result: Dict[str, Any]) -> str:
    """Markdown: per-step timings, then the test metrics per entity type (and per relation label)."""
    workflow = result.get("workflow", "all")
    rows = [[r["step"], fmt_duration(r["wall_s"]),
             ("ok" if r["ok"] else "FAILED") + (" (an earlier run of the same steps)" if r.get("reused_from") else "")]
            for r in result["steps"]]
    rows.append(["**total**", f"**{fmt_duration(result['total_s'])}**", ""])
    lines = [
        f"### `spacy project run {workflow}` on the embedded default",
        "",
        f"Command: `{result['command']}`",
        "",
        markdown_table(["step", "wall time", "status"], rows),
    ]
    metrics = result.get("test_metrics")
    if metrics and workflow == "rel":
        lines += ["", "CoNLL04 **test**, entities (spanbert_ner):", "", _score_table(metrics["entities"]), "",
                  "CoNLL04 **test**, relations (spanbert_rel, strict: label and both arguments' boundaries and types; "
                  f"boundaries-only F {100 * metrics['relations']['boundaries']['f']:.1f}):", "",
                  _score_table(metrics["relations"])]
    elif metrics and workflow == "textcat":
        rows = [[label, *(f"{100 * v[k]:.1f}" for k in ("p", "r", "f"))] for label, v in metrics["per_label"].items()]
        rows.append(["**macro**", *(f"**{100 * metrics['macro'][k]:.1f}**" for k in ("p", "r", "f"))])
        lines += ["", f"BBC News **test** (textcat on the SpanBERT transformer), accuracy "
                      f"{100 * metrics['accuracy']:.1f}:", "", markdown_table(["topic", "P", "R", "F"], rows)]
    elif metrics:
        lines += ["", "CoNLL-2003 **test** (spanbert_ner on the span-masked + SBO MiniLM-L6):", "",
                  _score_table(metrics)]
    heldout = result.get("pretrain_heldout")
    if heldout:
        lines += ["", "Held-out news text after pretraining: " + ", ".join(
            f"{k} {v:.3f}" for k, v in heldout.items() if isinstance(v, float))]
    lines += ["", machine_line(result["machine"])]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workflow", default="all", choices=sorted(WORKFLOWS), help="the project workflow to time")
    p.add_argument("--skip", nargs="*", default=[], help="steps not to rerun (their outputs must exist)")
    p.add_argument("--output", type=Path, default=RESULTS_DIR / "workflow.json")
    p.add_argument("--steps-from", type=Path, default=None,
                   help="a result file of an interrupted run: its records of the --skip steps count towards the total")
    args, overrides = p.parse_known_args(argv)
    bad = [o for o in overrides if o.startswith("-") and not o.startswith("--vars.")]
    if bad:
        p.error(f"unknown option(s) {bad}: only --vars.NAME VALUE overrides are passed to `spacy project run`")
    unknown = sorted(set(args.skip) - set(WORKFLOWS[args.workflow]))
    if unknown:
        p.error(f"--skip {unknown}: not steps of the {args.workflow} workflow {list(WORKFLOWS[args.workflow])}")
    steps = [s for s in WORKFLOWS[args.workflow] if s not in args.skip]
    earlier = []
    if args.steps_from is not None:
        previous = json.loads(args.steps_from.read_text())
        earlier = [dict(r, reused_from=previous["machine"].get("git_commit")) for r in previous["steps"]
                   if r["step"] in args.skip and r["ok"]]
        if [r["step"] for r in earlier] != [s for s in WORKFLOWS[args.workflow] if s in args.skip]:
            p.error(f"{args.steps_from} has no successful record of every --skip step")
    start = time.time()
    records = earlier + run_workflow(steps, overrides, ROOT / "bench" / "work" / "workflow")
    result = {
        "workflow": args.workflow, "command": " ".join([f"spacy project run {args.workflow}", *overrides]),
        "steps": records, "skipped": list(args.skip),
        "total_s": round(time.time() - start + sum(r["wall_s"] for r in earlier), 1),
        "test_metrics": read_json(ROOT / "metrics" / METRICS[args.workflow]),
        "pretrain_heldout": read_json(ROOT / "metrics" / "pretrain_heldout.json") if args.workflow == "all" else None,
        "machine": machine_info(),
    }
    write_results(args.output, result, render(result))
    return 0 if all(r["ok"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())

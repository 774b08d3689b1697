"""Turn `spacy evaluate` output into a per-type metrics file and print it as a table.

`spacy evaluate --output` mixes every scorer's keys; the project keeps one small, stable file per split
(`metrics/ner_<split>.json`: overall and per-type precision/recall/F, words per second) and prints it, so the
workflow ends with the numbers a user compares.

Usage: python scripts/print_metrics.py INPUT.json [--output metrics/ner_test.json] [--split test]
    [--pretrain metrics/pretrain_heldout.json]
INPUT is either `spacy evaluate` output or a file this script wrote.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from project_io import read_json_file, write_atomic


def summarise(scores: Dict[str, Any], split: str, source: str) -> Dict[str, Any]:
    """Pick the entity scores out of `spacy evaluate` output (scores as fractions in [0, 1])."""
    if "ents_f" not in scores or "ents_per_type" not in scores:
        raise ValueError(f"{source}: no 'ents_f' / 'ents_per_type' scores; was the pipeline evaluated with an "
                         f"entity component (spanbert_ner or ner)?")
    per_type = {
        label: {key: float(values.get(key) or 0.0) for key in ("p", "r", "f")}
        for label, values in sorted((scores["ents_per_type"] or {}).items())
    }
    return {
        "split": split,
        "overall": {key: float(scores.get(f"ents_{key}") or 0.0) for key in ("p", "r", "f")},
        "per_type": per_type,
        "words_per_second": scores.get("speed"),
    }


def format_table(metrics: Dict[str, Any]) -> str:
    """Render P/R/F per type and overall, as percentages, in a fixed-width table."""
    rows: List[List[str]] = [["type", "P", "R", "F"]]
    for label, values in metrics["per_type"].items():
        rows.append([label] + [f"{100 * values[k]:.1f}" for k in ("p", "r", "f")])
    rows.append(["overall"] + [f"{100 * metrics['overall'][k]:.1f}" for k in ("p", "r", "f")])
    return text_table(rows)


def text_table(rows: List[List[str]]) -> str:
    """Fixed-width columns (the first left-aligned), a rule under the header row and above the last (total) row."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)


def load_metrics(path: Path, split: str) -> Dict[str, Any]:
    data = read_json_file(path, "evaluate")
    if "per_type" in data and "overall" in data:
        return data
    return summarise(data, split, str(path))


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input", type=Path, help="`spacy evaluate --output` JSON, or a metrics file")
    parser.add_argument("--output", type=Path, default=None, help="where to write the per-type metrics JSON")
    parser.add_argument("--split", default="test", help="name of the evaluated split")
    parser.add_argument("--pretrain", type=Path, default=None, help="held-out pretraining loss JSON to print too")
    args = parser.parse_args(argv)
    try:
        metrics = load_metrics(args.input, args.split)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"print_metrics: {err}")
    if args.output:
        write_atomic(args.output, json.dumps(metrics, indent=2) + "\n")
    print(f"Entity scores on the {metrics['split']} split ({args.input}):")
    print(format_table(metrics))
    print(f"{metrics['split']} F1: {metrics['overall']['f']:.4f}")
    if args.pretrain and args.pretrain.is_file():
        loss = json.loads(args.pretrain.read_text(encoding="utf8"))
        if loss.get("n_blocks"):
            print(f"held-out pretraining loss ({loss['n_blocks']} blocks, {loss.get('scheme')} masks): "
                  f"MLM {loss['mlm_loss']:.3f}, SBO {loss['sbo_loss']:.3f}")


if __name__ == "__main__":
    main()

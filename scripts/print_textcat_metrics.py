"""Turn `spacy evaluate --per-component` output of a text classifier into a metrics file and print it as a table.

`spacy evaluate --output` without `--per-component` keeps only `cats_score` and the per-label scores; with it, the
textcat component's block holds every score spaCy's `Scorer.score_cats` computes. For exclusive classes (`textcat`,
`cats_score` = macro F) every document gets exactly one predicted and one gold label, so micro P = micro R = micro F
= accuracy. For `textcat_multilabel` (`cats_score` = macro AUC) no accuracy is printed, micro F and macro AUC are.

Usage: python scripts/print_textcat_metrics.py INPUT.json [--output metrics/textcat_test.json] [--split test]
INPUT is `spacy evaluate --per-component` output, plain `spacy evaluate` output or a file this script wrote.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from print_metrics import text_table
from project_io import read_json_file, write_atomic


def cats_block(scores: Dict[str, Any], source: str) -> Dict[str, Any]:
    """The textcat scores: the component block of `--per-component` output, or the top level."""
    if "cats_score" in scores:
        return scores
    blocks = [block for block in scores.values() if isinstance(block, dict) and "cats_score" in block]
    if len(blocks) != 1:
        raise ValueError(f"{source}: {'no' if not blocks else len(blocks)} text classification score blocks (keys "
                         f"{sorted(scores)[:8]}); evaluate a pipeline with one textcat or textcat_multilabel component")
    return blocks[0]


def summarise(scores: Dict[str, Any], split: str, source: str) -> Dict[str, Any]:
    """Accuracy (exclusive classes), macro P/R/F, micro F, macro AUC and per-label P/R/F (fractions in [0, 1])."""
    cats = cats_block(scores, source)
    if "cats_macro_f" not in cats:
        raise ValueError(f"{source}: no 'cats_macro_f' (plain `spacy evaluate` output keeps only cats_score); rerun "
                         f"`spacy evaluate MODEL DATA --output FILE --per-component`")
    exclusive = cats.get("cats_score_desc") != "macro AUC"
    per_label = {label: {key: float(values.get(key) or 0.0) for key in ("p", "r", "f")}
                 for label, values in sorted((cats.get("cats_f_per_type") or {}).items())}
    return {
        "split": split,
        "exclusive_classes": exclusive,
        "accuracy": float(cats["cats_micro_f"]) if exclusive else None,
        "macro": {key: float(cats.get(f"cats_macro_{key}") or 0.0) for key in ("p", "r", "f")},
        "micro_f": float(cats.get("cats_micro_f") or 0.0),
        "macro_auc": cats.get("cats_macro_auc"),
        "per_label": per_label,
        "words_per_second": scores.get("speed"),
    }


def format_table(metrics: Dict[str, Any]) -> str:
    """Per-label P/R/F and the macro average as percentages, then accuracy (or micro F and macro AUC)."""
    rows: List[List[str]] = [["label", "P", "R", "F"]]
    for label, values in metrics["per_label"].items():
        rows.append([label] + [f"{100 * values[k]:.1f}" for k in ("p", "r", "f")])
    rows.append(["macro"] + [f"{100 * metrics['macro'][k]:.1f}" for k in ("p", "r", "f")])
    lines = text_table(rows).splitlines()
    if metrics["exclusive_classes"]:
        lines.append(f"accuracy {100 * metrics['accuracy']:.1f}")
    else:
        auc = metrics.get("macro_auc")
        lines.append(f"micro F {100 * metrics['micro_f']:.1f}" + ("" if auc is None else f", macro AUC {auc:.3f}"))
    return "\n".join(lines)


def load_metrics(path: Path, split: str) -> Dict[str, Any]:
    data = read_json_file(path, "textcat_evaluate")
    if "per_label" in data and "macro" in data:
        return data
    return summarise(data, split, str(path))


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input", type=Path, help="`spacy evaluate --per-component --output` JSON, or a metrics file")
    parser.add_argument("--output", type=Path, default=None, help="where to write the metrics JSON")
    parser.add_argument("--split", default="test", help="name of the evaluated split")
    args = parser.parse_args(argv)
    try:
        metrics = load_metrics(args.input, args.split)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"print_textcat_metrics: {err}")
    if args.output:
        write_atomic(args.output, json.dumps(metrics, indent=2) + "\n")
    print(f"Text classification scores on the {metrics['split']} split ({args.input}):")
    print(format_table(metrics))


if __name__ == "__main__":
    main()

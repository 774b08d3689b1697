"""Turn `spacy evaluate` output of an entity + relation pipeline into one metrics file and print two tables.

Entities: P/R/F per type and overall (as `print_metrics.py`). Relations: strict P/R/F per label and overall (a
relation counts only with its label and both arguments' boundaries and types right), and the boundaries-only F.

Usage: python scripts/print_rel_metrics.py INPUT.json [--output metrics/rel_test.json] [--split test]
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from print_metrics import format_table, summarise
from project_io import write_atomic


def summarise_relations(scores: Dict[str, Any], split: str, source: str) -> Dict[str, Any]:
    """Entity and relation scores (fractions in [0, 1]) out of `spacy evaluate` output."""
    if "rel_micro_f" not in scores:
        raise ValueError(f"{source}: no 'rel_micro_f' score; was the pipeline evaluated with spanbert_rel?")
    per_label = {label: {key: float(values.get(key) or 0.0) for key in ("p", "r", "f")}
                 for label, values in sorted((scores.get("rel_per_label") or {}).items())}
    return {
        "split": split,
        "entities": summarise(scores, split, source),
        "relations": {
            "split": split,
            "overall": {key: float(scores.get(f"rel_micro_{key}") or 0.0) for key in ("p", "r", "f")},
            "boundaries": {key: float(scores.get(f"rel_boundaries_{key}") or 0.0) for key in ("p", "r", "f")},
            "per_type": per_label,
        },
        "words_per_second": scores.get("speed"),
    }


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input", type=Path, help="`spacy evaluate --output` JSON, or a file this script wrote")
    parser.add_argument("--output", type=Path, default=None, help="where to write the metrics JSON")
    parser.add_argument("--split", default="test", help="name of the evaluated split")
    args = parser.parse_args(argv)
    if not args.input.is_file():
        sys.exit(f"print_rel_metrics: {args.input}: not found; run `spacy project run rel_evaluate` first")
    try:
        data = json.loads(args.input.read_text(encoding="utf8"))
        metrics = data if "relations" in data else summarise_relations(data, args.split, str(args.input))
    except ValueError as err:
        sys.exit(f"print_rel_metrics: {err}")
    if args.output:
        write_atomic(args.output, json.dumps(metrics, indent=2) + "\n")
    print(f"Entities on the {metrics['split']} split ({args.input}):")
    print(format_table(metrics["entities"]))
    print(f"\nRelations (strict: label, both arguments' boundaries and types) on the {metrics['split']} split:")
    print(format_table(metrics["relations"]))
    rel = metrics["relations"]
    print(f"{metrics['split']} entity F1: {metrics['entities']['overall']['f']:.4f}; relation F1 strict: "
          f"{rel['overall']['f']:.4f}, boundaries: {rel['boundaries']['f']:.4f}")


if __name__ == "__main__":
    main()

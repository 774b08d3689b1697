"""Install a packaged pipeline wheel into this environment and check that it loads and runs.

A wheel that builds is not yet a wheel that works: its meta, its code and its registered functions are only
exercised by `spacy.load` in a fresh interpreter that has nothing of the training run in memory. The result (the
entities found in a sample text) is printed and written to a JSON file.

Usage: python scripts/check_package.py WHEEL --name en_pipeline [--output metrics/package_check.json] [--text ...]
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from project_io import write_atomic

SAMPLE = "EU rejects German call to boycott British lamb . Peter Blackburn reports from Brussels for Reuters ."

# Runs in a fresh interpreter so that only the installed package (not the training process) is exercised.
_LOAD = """
import json, sys
import spacy
nlp = spacy.load(sys.argv[1])
doc = nlp(sys.argv[2])
rels = []
if "spanbert_rel" in nlp.pipe_names:
    from spacy_spanbert.relations import relation_spans
    rels = [[head.text, label, tail.text, score] for head, tail, label, score in relation_spans(doc)]
print(json.dumps({"pipeline": nlp.pipe_names, "version": nlp.meta.get("version"),
                  "ents": [[e.text, e.label_, e.start_char, e.end_char] for e in doc.ents], "relations": rels}))
"""


def install(wheel: Path) -> None:
    if not wheel.is_file():
        raise FileNotFoundError(f"{wheel}: wheel not found; run `spacy project run package` first")
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--force-reinstall", "--quiet", str(wheel)]
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        last = (result.stdout.strip().splitlines() or ["no output"])[-1]
        raise ValueError(f"{wheel}: pip install failed ({last})")


def load_and_run(name: str, text: str) -> Dict[str, Any]:
    """spacy.load the installed package `name` in a new interpreter and run it on `text`."""
    result = subprocess.run([sys.executable, "-c", _LOAD, name, text], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ValueError(f"{name}: spacy.load of the installed package failed ({last})")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--name", required=True, help="package name to spacy.load, e.g. en_spanbert_conll")
    parser.add_argument("--text", default=SAMPLE)
    parser.add_argument("--output", type=Path, default=None, help="JSON file for the check's result")
    args = parser.parse_args(argv)
    try:
        install(args.wheel)
        result = load_and_run(args.name, args.text)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"check_package: {err}")
    result.update(wheel=str(args.wheel), name=args.name, text=args.text)
    if args.output:
        write_atomic(args.output, json.dumps(result, indent=2) + "\n")
    print(f"{args.name} {result['version']} installed from {args.wheel}; pipeline {result['pipeline']}")
    for text, label, _, _ in result["ents"]:
        print(f"  {label:<6} {text}")
    if not result["ents"]:
        print("  (no entities found in the sample text)")
    for head, label, tail, score in result.get("relations", []):
        print(f"  {head} --{label} {score:.2f}--> {tail}")


if __name__ == "__main__":
    main()

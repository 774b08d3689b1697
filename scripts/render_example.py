"""Draw a pipeline's entities (with their probabilities) and relations on a sentence, as an SVG for the docs.

Usage: python scripts/render_example.py MODEL_DIR OUTPUT.svg [--text "..."]
The README's picture is `python scripts/render_example.py training/model-best docs/images/ner.svg` after
`spacy project run all`.
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional

TEXT = "Angela Merkel met Emmanuel Macron at the Elysee Palace in Paris on Tuesday ."


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="a trained pipeline directory or package name")
    p.add_argument("output", type=Path, help="SVG file to write")
    p.add_argument("--text", default=TEXT)
    args = p.parse_args(argv)
    import spacy

    from spacy_spanbert.render import render_relations

    nlp = spacy.load(args.model)
    svg = render_relations(nlp(args.text), options={"distance": 120})
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(svg, encoding="utf8")
    print(f"{args.output}: {len(svg):,} characters")
    return 0


if __name__ == "__main__":
    sys.exit(main())

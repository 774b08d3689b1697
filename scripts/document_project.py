"""Write docs/project.md, the project's commands and workflows, from project.yml with `spacy project document`.

weasel's page links `project.yml` relative to the project root, which the docs site does not hold: the link becomes
a code span. `--check` exits 1 when the committed page is out of date (the test suite runs it).

Usage: python scripts/document_project.py [--output docs/project.md] [--check]
"""
import argparse
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]


def render() -> str:
    done = subprocess.run([sys.executable, "-m", "spacy", "project", "document", str(ROOT)], capture_output=True,
                          text=True, check=True)
    return done.stdout.replace("[`project.yml`](project.yml)", "`project.yml`").rstrip() + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", type=Path, default=ROOT / "docs" / "project.md")
    p.add_argument("--check", action="store_true", help="exit 1 when OUTPUT differs from what project.yml gives")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        if not args.output.is_file() or args.output.read_text(encoding="utf8") != text:
            print(f"{args.output} is out of date: run python scripts/document_project.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

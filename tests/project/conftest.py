"""Fixtures for the project workflow tests: the scripts/ directory on sys.path and CoNLL-2003 style samples."""
import random
import sys
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

# Two documents; the second has a stray I- start (IOB1 style) and a two-token LOC after a B-PER.
CONLL_SAMPLE = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP I-LOC
1996-08-22 CD I-NP O

The DT B-NP O
European NNP I-NP B-ORG
Commission NNP I-NP I-ORG
said VBD B-VP O
in IN B-PP O
New NNP B-NP B-LOC
York NNP I-NP I-LOC
. . O O

Germany NNP B-NP B-LOC
's POS B-NP O
representative NN I-NP O
"""

PERSONS = ["John Smith", "Mary", "Anna Smith", "Peter"]
PLACES = ["London", "Paris", "Berlin"]
ORGS = ["Reuters", "Google"]
FILLER = "the old man saw a small dog in the city and then visited the big house near the river".split()


def write_conll_docs(path: Path, n_docs: int, sents_per_doc: int = 4, seed: int = 0) -> Path:
    """A CoNLL-2003 file of generated news-like sentences with PER, LOC and ORG entities (IOB2)."""
    rng = random.Random(seed)
    lines: List[str] = []
    for _ in range(n_docs):
        lines += ["-DOCSTART- -X- -X- O", ""]
        for _ in range(sents_per_doc):
            for label, names in (("PER", PERSONS), ("ORG", ORGS), ("LOC", PLACES)):
                for i, word in enumerate(rng.choice(names).split()):
                    lines.append(f"{word} NNP I-NP {'B' if i == 0 else 'I'}-{label}")
                start = rng.randrange(len(FILLER) - 3)
                lines += [f"{w} NN I-NP O" for w in FILLER[start : start + rng.randint(1, 3)]]
            lines += [". . O O", ""]
    path.write_text("\n".join(lines) + "\n", encoding="utf8")
    return path


@pytest.fixture
def conll_sample(tmp_path) -> Path:
    path = tmp_path / "sample.txt"
    path.write_text(CONLL_SAMPLE, encoding="utf8")
    return path

"""Fixtures for the project workflow tests: the scripts/ directory on sys.path and a CoNLL-2003 sample."""
import sys
from pathlib import Path

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


@pytest.fixture
def conll_sample(tmp_path) -> Path:
    path = tmp_path / "sample.txt"
    path.write_text(CONLL_SAMPLE, encoding="utf8")
    return path

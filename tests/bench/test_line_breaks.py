"""bench/line_breaks.py: one trained pipeline scored three ways on a CoNLL file; bad input fails in one line."""
import json

import pytest

from bench import line_breaks
from bench.tiny_pipeline import build_tiny_ner_pipeline

# a byline and a dateline with no punctuation between them: the case line breaks are for
CONLL = """-DOCSTART- -X- -X- O

John NNP B-NP B-PER
Smith NNP I-NP I-PER

LONDON NNP B-NP B-LOC

Mary NNP B-NP B-PER
saw VBD B-VP O
Paris NNP B-NP B-LOC
. . O O
"""


def test_scores_each_pipeline_three_ways(tmp_path):
    pipeline = build_tiny_ner_pipeline(tmp_path / "tiny", steps=2)["pipeline"]
    conll = tmp_path / "test.txt"
    conll.write_text(CONLL, encoding="utf8")
    out = tmp_path / "line_breaks.json"
    line_breaks.main(["--models", str(pipeline), "--conll", str(conll), "--work-dir", str(tmp_path / "work"),
                      "--threads", "1", "--output", str(out)])
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert set(line_breaks.CONDITIONS) <= set(row)
    assert all(0.0 <= row[c]["f"] <= 1.0 for c in line_breaks.CONDITIONS)
    # the line-break copy of the split has a "\n" token between each pair of sentences, and nothing else new
    import spacy
    from spacy.tokens import DocBin

    vocab = spacy.blank("en").vocab
    (plain,) = DocBin().from_disk(tmp_path / "work" / "test.spacy").get_docs(vocab)
    (lines,) = DocBin().from_disk(tmp_path / "work" / "test_lines.spacy").get_docs(vocab)
    assert [t.text for t in lines].count("\n") == 2 and len(lines) == len(plain) + 2
    text = out.with_suffix(".md").read_text()
    assert "+ within_lines" in text and "Rerun: `python bench/line_breaks.py --models" in text


def test_missing_inputs_are_one_line_before_any_work(tmp_path):
    with pytest.raises(FileNotFoundError, match="no trained pipeline at"):
        line_breaks.main(["--models", str(tmp_path / "nope"), "--conll", __file__, "--work-dir", str(tmp_path)])
    assert not (tmp_path / "test.spacy").exists()
    with pytest.raises(FileNotFoundError, match="CoNLL test file not found.*--conll FILE"):
        line_breaks.main(["--models", str(tmp_path), "--conll", str(tmp_path / "missing.txt"),
                          "--work-dir", str(tmp_path)])

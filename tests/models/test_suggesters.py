"""sentence_ngram_suggester: every span up to max_width inside a sentence and a line; the Suggester protocol."""
import numpy
import pytest
import spacy
from spacy.pipeline.spancat import Suggester
from spacy.tokens import Doc

from spacy_spanbert.models.suggesters import build_sentence_ngram_suggester


@pytest.fixture(scope="module")
def vocab():
    return spacy.blank("en").vocab


def rows(ragged, i):
    return [tuple(int(x) for x in r) for r in ragged[i].dataXd]


def test_all_spans_inside_sentences(vocab):
    doc = Doc(vocab, words="a b c d e f g".split(), sent_starts=[True, False, False, True, False, False, False])
    suggester = build_sentence_ngram_suggester(max_width=3)
    assert isinstance(suggester, Suggester)
    out = suggester([doc])
    expected = sorted(
        (s, s + w) for lo, hi in [(0, 3), (3, 7)] for s in range(lo, hi) for w in range(1, 4) if s + w <= hi
    )
    assert rows(out, 0) == expected
    assert all(e - s <= 3 for s, e in expected)


def test_without_sentences_the_doc_is_one_window_and_space_tokens_are_skipped(vocab):
    doc = Doc(vocab, words=["a", "\n\n", "b", "c"], spaces=[True, False, True, False])
    out = build_sentence_ngram_suggester(max_width=10, within_lines=False)([doc])
    spans = rows(out, 0)
    assert (0, 4) in spans and (2, 4) in spans
    assert not [(s, e) for s, e in spans if s == 1 or e == 2]


def test_batches_with_empty_docs(vocab):
    docs = [Doc(vocab, words=[]), Doc(vocab, words=["x", "y"]), Doc(vocab, words=[])]
    out = build_sentence_ngram_suggester(max_width=10)(docs)
    assert list(numpy.asarray(out.lengths)) == [0, 3, 0]
    assert rows(out, 1) == [(0, 1), (0, 2), (1, 2)]
    empty = build_sentence_ngram_suggester()([Doc(vocab, words=[])])
    assert int(empty.lengths.sum()) == 0 and empty.dataXd.shape == (0, 2)


def test_bad_max_width():
    with pytest.raises(ValueError, match="max_width"):
        build_sentence_ngram_suggester(max_width=0)


def test_spans_stay_inside_lines_unless_within_lines_is_off(vocab):
    # "Nadim Ladki" on one line, "AL-AIN" on the next: a line break of any kind ends a segment
    for brk in ("\n", "\n\n", "\r\n", " \n", "\u2028", "\x0b"):
        doc = Doc(vocab, words=["Nadim", "Ladki", brk, "AL-AIN", ",", "UAE"],
                  spaces=[True, False, False, False, True, False])
        within = rows(build_sentence_ngram_suggester(max_width=10)([doc]), 0)
        assert within == [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (3, 6), (4, 5), (4, 6), (5, 6)], brk
        assert (1, 4) in rows(build_sentence_ngram_suggester(max_width=10, within_lines=False)([doc]), 0)


def test_other_whitespace_and_sentences_still_apply(vocab):
    # a run of spaces is not a line break; sentence starts still end segments; a trailing break is harmless
    doc = Doc(vocab, words=["New", "  ", "York", "Paris", "\n"], spaces=[False, False, True, False, False],
              sent_starts=[True, False, False, True, False])
    spans = rows(build_sentence_ngram_suggester(max_width=10)([doc]), 0)
    assert spans == [(0, 1), (0, 3), (2, 3), (3, 4)]


def test_it_is_registered_and_is_the_factories_default(vocab):
    suggester = spacy.registry.misc.get("spacy-spanbert.sentence_ngram_suggester.v2")(max_width=4)
    assert suggester.max_width == 4 and suggester.within_lines
    nlp = spacy.blank("en")
    for factory in ("spanbert_ner", "spanbert_spancat"):
        cfg = nlp.get_factory_meta(factory).default_config["suggester"]
        assert cfg["@misc"] == "spacy-spanbert.sentence_ngram_suggester.v2" and cfg["within_lines"] is True

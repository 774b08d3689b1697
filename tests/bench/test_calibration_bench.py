"""bench/calibration.py --nested: spancat's nested data keeps every entity and adds the sub-spans that are names in
train (by train's lexicon only)."""
import spacy
from spacy.tokens import DocBin, Span
from spacy.vocab import Vocab

from bench.calibration import derive_nested

TEXTS = [("England won .", [(0, 1, "LOC")]), ("England lost .", [(0, 1, "LOC")]),
         ("The Bank of England rose .", [(1, 4, "ORG")]), ("Manchester United won .", [(0, 2, "ORG")]),
         ("United they stand .", []), ("United we fall .", []), ("United again .", []),
         ("Bank of England and Manchester United .", [(0, 3, "ORG"), (4, 6, "ORG")]), ("United .", [(0, 1, "ORG")]),
         ("United .", [(0, 1, "ORG")])]


def test_nested_sub_spans_come_from_the_train_lexicon(tmp_path):
    nlp = spacy.blank("en")
    docs = []
    for text, ents in TEXTS:
        doc = nlp.make_doc(text)
        doc.ents = [Span(doc, s, e, label=label) for s, e, label in ents]
        docs.append(doc)
    DocBin(docs=docs).to_disk(tmp_path / "train.spacy")
    DocBin(docs=docs[2:3]).to_disk(tmp_path / "test.spacy")
    derive_nested([tmp_path / "train.spacy", tmp_path / "test.spacy"], tmp_path / "nested")
    test = list(DocBin().from_disk(tmp_path / "nested" / "test.spacy").get_docs(Vocab()))
    assert [(s.start, s.end, s.label_) for s in test[0].spans["sc"]] == [(1, 4, "ORG"), (3, 4, "LOC")]
    train = list(DocBin().from_disk(tmp_path / "nested" / "train.spacy").get_docs(Vocab()))
    # "United" is an entity only 2 of its 7 times in train: Manchester United gets no nested span
    assert [s.text for s in train[3].spans["sc"]] == ["Manchester United"]
    assert [s.text for s in train[7].spans["sc"]] == ["Bank of England", "England", "Manchester United"]

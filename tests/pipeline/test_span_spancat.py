"""spanbert_spancat: nested and overlapping spans, multi-label sigmoid, serialisation, scorer."""
import spacy
from spacy.training import Example
from span_helpers import assert_roundtrip, component_config, train

SPANCAT_DATA = [
    # nested: a location inside an organisation; overlapping: two labels on one span
    ("The Bank of London met John Smith .", [(4, 18, "ORG"), (12, 18, "LOC"), (23, 33, "PER"), (23, 27, "NAME")]),
    ("Mary saw the University of Paris .", [(0, 4, "PER"), (0, 4, "NAME"), (13, 32, "ORG"), (27, 32, "LOC")]),
]


def spans_of(doc, key="sc"):
    return sorted((s.start_char, s.end_char, s.label_) for s in doc.spans[key])


def make_examples(nlp):
    examples = []
    for text, spans in SPANCAT_DATA:
        doc = nlp.make_doc(text)
        ref = doc.copy()
        ref.spans["sc"] = [ref.char_span(s, e, label=label) for s, e, label in spans]
        examples.append(Example(doc, ref))
    return examples


def test_overfitting_IO(tiny_bert_dir, tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("spanbert_spancat", config=component_config(tiny_bert_dir))
    examples = make_examples(nlp)
    losses = train(nlp, examples, steps=250)
    assert losses["spanbert_spancat"] < 0.05
    texts = [text for text, _ in SPANCAT_DATA]
    docs = list(nlp.pipe(texts))
    for doc, (_, gold) in zip(docs, SPANCAT_DATA):
        assert spans_of(doc) == sorted(gold)
        scores = doc.spans["sc"].attrs["scores"]
        assert len(scores) == len(doc.spans["sc"]) and all(0.5 <= s <= 1.0 for s in scores)
    scores = nlp.evaluate(examples)
    assert scores["spans_sc_p"] == scores["spans_sc_r"] == scores["spans_sc_f"] == 1.0

    assert_roundtrip(nlp, "spanbert_spancat", tiny_bert_dir, texts, "sc", spans_of, tmp_path)


def test_empty_and_odd_input(tiny_bert_dir):
    nlp = spacy.blank("en")
    nlp.add_pipe("spanbert_spancat", config=component_config(tiny_bert_dir, threshold=0.0))
    train(nlp, make_examples(nlp), steps=2)
    for text in ["", "  \n ", "London", "😀 \x00 東京 Москва"]:
        doc = nlp(text)
        scores = list(doc.spans["sc"].attrs["scores"])  # promised for every group, also with no candidates
        assert len(scores) == len(doc.spans["sc"])
        assert all(0.0 <= s <= 1.0 for s in scores)

"""spanbert_spancat: nested and overlapping spans, multi-label sigmoid, serialisation, scorer."""
import numpy
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


def test_decoding_keeps_labels_over_the_threshold_the_best_max_positive_and_no_overlap_when_asked():
    from spacy_spanbert.pipeline.span_spancat import decode_spans

    spans = numpy.asarray([[0, 2], [1, 3], [3, 4]])
    scores = numpy.asarray([[0.9, 0.6, 0.1], [0.2, 0.95, 0.7], [0.3, 0.4, 0.45]], dtype="f")
    every = decode_spans(spans, scores, 0.5, None)
    assert [(s, e, k) for s, e, k, _ in every] == [(0, 2, 0), (0, 2, 1), (1, 3, 1), (1, 3, 2)]
    assert [round(p, 2) for *_, p in every] == [0.9, 0.6, 0.95, 0.7]
    assert [(s, e, k) for s, e, k, _ in decode_spans(spans, scores, 0.5, 1)] == [(0, 2, 0), (1, 3, 1)]
    # one label per span, no overlap: (1, 3) scores best, so (0, 2) goes; nothing passes 0.5 at (3, 4)
    assert [(s, e, k) for s, e, k, _ in decode_spans(spans, scores, 0.5, 1, allow_overlap=False)] == [(1, 3, 1)]
    assert len(decode_spans(spans, scores, None, 2)) == 6 and decode_spans(spans[:0], scores[:0], 0.5, None) == []

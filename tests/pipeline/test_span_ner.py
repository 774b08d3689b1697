"""spanbert_ner: overfitting + serialisation, drop-in use beside `ner`, bad input, long documents, errors."""
import warnings

import numpy
import pytest
import spacy
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import fix_random_seed
from span_helpers import NER_DATA, STRIDE, WINDOW, assert_roundtrip, component_config, ents, ner_examples, train

from spacy_spanbert.models.transformer import is_spanbert_transformer


def test_overfitting_IO(blank_ner, tmp_path, tiny_bert_dir):
    nlp = blank_ner
    examples = ner_examples(nlp)
    losses = train(nlp, examples)
    assert losses["spanbert_ner"] < 0.05
    texts = [text for text, _ in NER_DATA]
    gold = [sorted(e) for _, e in NER_DATA]
    docs = list(nlp.pipe(texts))
    assert [ents(doc) for doc in docs] == gold
    for doc in docs:
        group = doc.spans["spanbert_ents"]
        assert [(s.start, s.end, s.label_) for s in group] == [(e.start, e.end, e.label_) for e in doc.ents]
        assert len(group.attrs["scores"]) == len(group)
        assert all(0.5 < e._.spanbert_score <= 1.0 for e in doc.ents)
    scores = nlp.evaluate(examples)
    assert scores["ents_p"] == scores["ents_r"] == scores["ents_f"] == 1.0
    assert set(scores["ents_per_type"]) == {"PER", "LOC", "ORG"}
    multi = list(nlp.pipe(texts, n_process=2, batch_size=1))
    assert [ents(doc) for doc in multi] == gold
    assert [e._.spanbert_score for e in multi[0].ents] == [e._.spanbert_score for e in docs[0].ents]

    assert_roundtrip(nlp, "spanbert_ner", tiny_bert_dir, texts, "spanbert_ents", ents, tmp_path)


def test_learns_and_round_trips_on_a_transformer_with_case_types(tiny_bert_dir, tmp_path):
    """SpanBERT.v3 `case_types` inside the component: trains, predicts and loads back with its larger type table."""
    nlp = spacy.blank("en")
    config = component_config(tiny_bert_dir)
    config["model"]["tok2vec"].update({"@architectures": "spacy-spanbert.SpanBERT.v4", "case_types": True})
    config["model"]["tok2vec"]["get_spans"]["@span_getters"] = "spacy-transformers.strided_spans.v1"
    nlp.add_pipe("spanbert_ner", config=config)
    losses = train(nlp, ner_examples(nlp), steps=80)
    assert losses["spanbert_ner"] < 0.05
    assert [ents(nlp(text)) for text, _ in NER_DATA] == [sorted(e) for _, e in NER_DATA]
    nlp.to_disk(tmp_path / "pipe")
    loaded = spacy.load(tmp_path / "pipe")
    assert loaded.get_pipe("spanbert_ner").model.get_ref("tok2vec")  # built from the saved config
    assert [ents(loaded(text)) for text, _ in NER_DATA] == [sorted(e) for _, e in NER_DATA]


def test_weights_are_saved_without_pickles(blank_ner):
    nlp = blank_ner
    train(nlp, ner_examples(nlp), steps=1)
    data = nlp.get_pipe("spanbert_ner").to_bytes()
    assert b"PK\x03\x04" not in data  # torch.save writes a zip archive of pickles
    assert data.count(b'"__metadata__"') >= 1 and b'"format":"pt"' in data  # safetensors headers


def test_add_pipe_beside_ner_keep_or_overwrite(tiny_bert_dir):
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")  # stands in for an earlier trained `ner`: sets doc.ents first
    ruler.add_patterns([{"label": "ANIMAL", "pattern": "dog"}])
    nlp.add_pipe("ner")
    nlp.add_pipe("spanbert_ner", config=component_config(tiny_bert_dir, overwrite_ents=False))
    examples = ner_examples(nlp)
    nlp.disable_pipe("entity_ruler")
    train(nlp, examples, steps=120)
    nlp.enable_pipe("entity_ruler")
    nlp.remove_pipe("ner")
    doc = nlp("John saw the big dog in London .")
    assert ents(doc) == [(0, 4, "PER"), (17, 20, "ANIMAL"), (24, 30, "LOC")]
    nlp.get_pipe("spanbert_ner").cfg["overwrite_ents"] = True
    assert ents(nlp("John saw the big dog in London .")) == [(0, 4, "PER"), (24, 30, "LOC")]

    # `source=` copies the trained component into another pipeline with identical output
    other = spacy.blank("en")
    other.add_pipe("spanbert_ner", source=nlp)
    assert ents(other("John saw the big dog in London .")) == [(0, 4, "PER"), (24, 30, "LOC")]


def test_training_beside_a_trained_ner_leaves_it_untouched(tiny_bert_dir):
    """The README's drop-in recipe: add spanbert_ner to a trained pipeline and train only it (select_pipes here,
    frozen_components in `spacy train`); the trained ner's weights and entities stay as they were."""
    nlp = spacy.blank("en")
    nlp.add_pipe("ner")
    train(nlp, ner_examples(nlp), steps=40)
    texts = [text for text, _ in NER_DATA]
    before = [ents(doc) for doc in nlp.pipe(texts)]
    assert any(before)
    ner_state = nlp.get_pipe("ner").to_bytes()
    nlp.add_pipe("spanbert_ner", config=component_config(tiny_bert_dir, overwrite_ents=False))
    with nlp.select_pipes(enable=["spanbert_ner"]):
        losses = train(nlp, ner_examples(nlp), steps=60)
    assert set(losses) == {"spanbert_ner"} and nlp.get_pipe("ner").to_bytes() == ner_state
    for doc, old in zip(nlp.pipe(texts), before):
        assert set(old) <= set(ents(doc))


def test_kept_entities_block_their_tokens_before_decoding(blank_ner):
    """With overwrite_ents = False, a span overlapping an existing entity must not beat its neighbour and vanish."""
    from thinc.api import Ragged

    nlp = blank_ner
    train(nlp, ner_examples(nlp), steps=1)
    ner = nlp.get_pipe("spanbert_ner")
    ner.cfg["overwrite_ents"] = False
    doc = nlp.make_doc("Rex Smith saw Paris .")
    doc.ents = [Span(doc, 0, 1, label="ANIMAL")]
    spans = numpy.asarray([[0, 2], [1, 2], [3, 4]], dtype="i")
    probs = numpy.zeros((3, len(ner.labels) + 1), dtype="f")
    probs[:, ner._negative_label_i] = 0.05
    for row, (label, p) in enumerate([("PER", 0.9), ("PER", 0.8), ("LOC", 0.7)]):
        probs[row, ner.labels.index(label)] = p
    ner.set_annotations([doc], (Ragged(ner.model.ops.asarray(spans), ner.model.ops.asarray1i([3])), probs))
    assert [(e.start, e.end, e.label_) for e in doc.ents] == [(0, 1, "ANIMAL"), (1, 2, "PER"), (3, 4, "LOC")]
    assert doc.spans["spanbert_ents"].attrs["scores"] == pytest.approx([0.8, 0.7])


def test_load_time_settings_override_the_saved_ones(blank_ner, tmp_path):
    nlp = blank_ner
    train(nlp, ner_examples(nlp), steps=1)
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p", config={"components": {"spanbert_ner": {"overwrite_ents": False,
                                                                               "threshold": 0.7}}})
    assert loaded.get_pipe("spanbert_ner").cfg["overwrite_ents"] is False
    assert loaded.get_pipe("spanbert_ner").cfg["threshold"] == 0.7
    assert spacy.load(tmp_path / "p").get_pipe("spanbert_ner").cfg["overwrite_ents"] is True


@pytest.mark.parametrize(
    "text",
    ["", "   ", "\n\n", "John", "😀 🚀 John ✨", "Mary\x00\x07 liked \u200b Paris", "John met 東京 and Москва ۱۲۳ .",
     "a" * 300],
)
def test_bad_input_does_not_crash(blank_ner, text):
    nlp = blank_ner
    train(nlp, ner_examples(nlp), steps=2)
    doc = nlp(text)
    scores = doc.spans["spanbert_ents"].attrs["scores"]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert len(scores) == len(doc.ents)
    assert list(nlp.pipe([text, "", text], batch_size=2))


@pytest.mark.slow  # subprocesses or a long end-to-end run: CI runs it, the quick loop skips it
def test_long_doc_fully_covered_and_entity_at_end_found(tiny_bert_dir):
    nlp = spacy.blank("en")
    # Sampling 5% of the ~36,000 negative candidates per update keeps the two positives from drowning.
    nlp.add_pipe("spanbert_ner", config=component_config(tiny_bert_dir, negative_sample_rate=0.05))
    filler = ("the old man saw a red car near the river and the young woman took the book . " * 200).split()
    words = filler + ["Mary", "visited", "Berlin", "."]
    assert len(words) > 3000
    long_doc = Doc(nlp.vocab, words=words)
    n = len(words)
    long_eg = Example.from_dict(long_doc, {"entities": ["O"] * (n - 4) + ["U-PER", "O", "U-LOC", "O"]})
    examples = ner_examples(nlp) + [long_eg]
    train(nlp, examples, steps=90)
    ner = nlp.get_pipe("spanbert_ner")
    tok2vec = ner.model.get_ref("tok2vec")
    vectors = tok2vec.predict([Doc(nlp.vocab, words=words)])[0]
    assert vectors.shape[0] == n
    assert (numpy.abs(vectors).sum(axis=1) > 0).all(), "some tokens got no transformer window"
    transformer = next(node for node in tok2vec.walk() if is_spanbert_transformer(node))
    windows = transformer.attrs["get_spans"]([long_doc])[0]
    covered = numpy.zeros(n, dtype=bool)
    for span in windows:
        assert len(span) <= WINDOW
        covered[span.start : span.end] = True
    assert covered.all() and len(windows) >= n // STRIDE
    doc = nlp(Doc(nlp.vocab, words=words))
    assert [(e.start, e.end, e.label_) for e in doc.ents] == [(n - 4, n - 3, "PER"), (n - 2, n - 1, "LOC")]


def test_label_unseen_at_initialisation_is_a_clear_error(blank_ner):
    nlp = blank_ner
    examples = ner_examples(nlp)
    train(nlp, examples, steps=1)
    new = Example.from_dict(nlp.make_doc("Reuters saw the dog ."), {"entities": [(0, 7, "NEWS")]})
    with pytest.raises(ValueError, match=r"'NEWS' was not seen at initialisation.*labels"):
        nlp.update([new])


def test_gold_wider_than_max_width_warns_once_with_count(tiny_bert_dir):
    nlp = spacy.blank("en")
    nlp.add_pipe("spanbert_ner", config=component_config(tiny_bert_dir, suggester={"max_width": 2}))
    data = NER_DATA + [
        ("the big red dog met Mary .", [(0, 15, "ANIMAL")]),
        ("the small old cat saw John .", [(0, 17, "ANIMAL")]),
    ]
    examples = ner_examples(nlp, data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nlp.initialize(lambda: examples)
        nlp.update(examples)
    ours = [w for w in caught if "max_width" in str(w.message)]
    assert len(ours) == 1
    assert "2 of 8 gold spans are wider than max_width=2" in str(ours[0].message)


def test_fresh_component_starts_at_the_entity_prior(blank_ner):
    """Before training the output bias says "almost every candidate is no entity" (the sample's share)."""
    nlp = blank_ner
    fix_random_seed(0)
    nlp.initialize(lambda: ner_examples(nlp))
    ner = nlp.get_pipe("spanbert_ner")
    docs = [nlp.make_doc(text) for text, _ in NER_DATA]
    _, probs = ner.predict(docs)
    assert probs[:, -1].mean() > 0.8
    assert sum(len(doc.ents) for doc in nlp.pipe(text for text, _ in NER_DATA)) <= 1


def test_standalone_with_spacy_transformers_tok2vec(tiny_bert_dir):
    """The tok2vec sublayer may also be spacy-transformers' own Tok2VecTransformer.v3."""
    nlp = spacy.blank("en")
    tok2vec = {
        "@architectures": "spacy-transformers.Tok2VecTransformer.v3",
        "name": str(tiny_bert_dir),
        "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": WINDOW, "stride": STRIDE},
        "tokenizer_config": {"use_fast": True},
        "pooling": {"@layers": "reduce_mean.v1"},
        "grad_factor": 1.0,
    }
    nlp.add_pipe("spanbert_ner", config={"model": {"hidden_width": 32, "tok2vec": tok2vec}})
    train(nlp, ner_examples(nlp))
    assert [ents(doc) for doc in nlp.pipe(text for text, _ in NER_DATA)] == [sorted(e) for _, e in NER_DATA]


def test_spanbert_score_finds_every_entity_of_a_long_group():
    from spacy.tokens import Doc, Span, SpanGroup

    from spacy_spanbert.pipeline.span_ner import _span_score

    doc = Doc(spacy.blank("en").vocab, words=["w"] * 3000)
    spans = [Span(doc, i, i + 2, label="ORG" if i % 2 else "PER") for i in range(0, 3000, 3)]
    group = SpanGroup(doc, name="spanbert_ents", spans=spans)
    group.attrs["scores"] = [i / 1000 for i in range(len(spans))]
    doc.spans["spanbert_ents"] = group
    doc.user_data["spanbert_ner.spans_key"] = "spanbert_ents"
    assert [_span_score(s) for s in spans] == group.attrs["scores"]
    assert _span_score(Span(doc, 0, 1, label="PER")) is None  # right start, wrong end
    assert _span_score(Span(doc, 3, 5, label="PER")) is None  # right offsets, wrong label (ORG)
    assert _span_score(Span(doc, 2999, 3000, label="PER")) is None  # after the last entity


@pytest.mark.parametrize("factory", ["spanbert_ner", "spanbert_spancat"])
def test_training_data_without_gold_spans_is_one_clear_error(tiny_bert_dir, factory):
    nlp = spacy.blank("en")
    nlp.add_pipe(factory, config=component_config(tiny_bert_dir))
    examples = [Example.from_dict(nlp.make_doc(text), {}) for text, _ in NER_DATA]
    with pytest.raises(ValueError, match=r"has no gold spans in doc\.(ents|spans\['sc'\]) \(0 spans in 3 examples\)"):
        nlp.initialize(lambda: examples)


def test_calibration_changes_scores_not_the_training_loss(blank_ner):
    """temperature and calibration_bias shape the predicted probabilities; updates keep using the model's own."""
    nlp = blank_ner
    examples = ner_examples(nlp)
    train(nlp, examples, steps=30)
    ner = nlp.get_pipe("spanbert_ner")
    docs = [eg.predicted for eg in examples]
    indices, raw = ner.predict(docs)
    logits = ner.model.predict((docs, indices))
    loss_raw, grad_raw = ner.get_loss(examples, (indices, logits))
    ner.cfg["temperature"] = 2.0
    _, hot = ner.predict(docs)
    numpy.testing.assert_allclose(hot.argmax(axis=1), raw.argmax(axis=1))
    assert hot.max(axis=1).mean() < raw.max(axis=1).mean()  # a higher temperature flattens the distribution
    loss_cal, grad_cal = ner.get_loss(examples, (indices, logits))
    assert loss_cal == pytest.approx(loss_raw) and numpy.allclose(grad_cal, grad_raw)


def test_a_suggester_wider_than_the_saved_width_embedding_is_one_clear_error(blank_ner, tmp_path):
    nlp = blank_ner
    train(nlp, ner_examples(nlp), steps=1)
    nlp.to_disk(tmp_path / "pipe")
    with pytest.raises(ValueError, match="smaller than the suggester's max_width=12"):
        spacy.load(tmp_path / "pipe", config={"components": {"spanbert_ner": {"suggester": {"max_width": 12}}}})
    narrower = spacy.load(tmp_path / "pipe", config={"components": {"spanbert_ner": {"suggester": {"max_width": 4}}}})
    assert narrower.get_pipe("spanbert_ner").max_width == 4

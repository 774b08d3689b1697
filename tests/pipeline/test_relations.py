"""`spanbert_rel`: training to the right relations, saving and loading, scoring, and its one-line errors.

The pipelines are a tiny random BERT (`tiny_bert_dir`) as the shared transformer, an `entity_ruler` (or
`spanbert_ner`) for the entities and `spanbert_rel` listening to the transformer.
"""
import numpy
import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from spacy.util import fix_random_seed

from spacy_spanbert.relation_data import record_to_doc
from spacy_spanbert.relations import candidate_pairs, get_relations, relation_spans, set_relations
from spacy_spanbert.render import relation_graph, render_relations
from span_helpers import STRIDE, WINDOW

RECORDS = [
    {"tokens": ["John", "lives", "in", "Boston", "."], "entities": [[0, 1, "Peop"], [3, 4, "Loc"]],
     "relations": [[0, 1, 3, 4, "Live_In"]]},
    {"tokens": ["Mary", "works", "for", "Google", "in", "Paris", "."],
     "entities": [[0, 1, "Peop"], [3, 4, "Org"], [5, 6, "Loc"]],
     "relations": [[0, 1, 3, 4, "Work_For"], [3, 4, 5, 6, "OrgBased_In"]]},
    {"tokens": ["Google", "is", "based", "in", "Boston", "."], "entities": [[0, 1, "Org"], [4, 5, "Loc"]],
     "relations": [[0, 1, 4, 5, "OrgBased_In"]]},
    {"tokens": ["John", "met", "Mary", "."], "entities": [[0, 1, "Peop"], [2, 3, "Peop"]], "relations": []},
]
PATTERNS = [{"label": "Peop", "pattern": name} for name in ("John", "Mary")] + [
    {"label": "Org", "pattern": "Google"}] + [{"label": "Loc", "pattern": name} for name in ("Boston", "Paris")]


def transformer_config(bert_dir) -> dict:
    return {"model": {"@architectures": "spacy-spanbert.SpanBERT.v4", "name": str(bert_dir), "case_types": True,
                      "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": WINDOW,
                                    "stride": STRIDE}}}


def rel_pipeline(bert_dir, **rel_config) -> Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns(PATTERNS)  # first: its phrase patterns run the pipe before it
    nlp.add_pipe("transformer", config=transformer_config(bert_dir))
    nlp.add_pipe("spanbert_rel", config={"model": {"hidden_width": 32}, **rel_config})
    return nlp


def examples(nlp: Language, records=RECORDS):
    refs = [record_to_doc(nlp.vocab, r, f"record {i}") for i, r in enumerate(records)]
    return [Example(Doc(nlp.vocab, words=[t.text for t in ref]), ref) for ref in refs]


def triples(doc):
    return sorted((head.text, label, tail.text) for head, tail, label, _ in relation_spans(doc))


def train(nlp, egs, steps=60):
    fix_random_seed(0)
    optimizer = nlp.initialize(lambda: egs)
    nlp.get_pipe("entity_ruler").add_patterns(PATTERNS)  # initialize empties the ruler
    optimizer.learn_rate = 3e-3
    for _ in range(steps):
        nlp.update(egs, sgd=optimizer, losses={})
    return optimizer


@pytest.fixture(scope="module")
def trained(tiny_bert_dir, tmp_path_factory):
    nlp = rel_pipeline(tiny_bert_dir)
    egs = examples(nlp)
    train(nlp, egs)
    return nlp, egs


def test_overfits_predicts_saves_loads_and_scores_one(trained, tmp_path):
    nlp, egs = trained
    texts = [" ".join(r["tokens"]) for r in RECORDS]
    expected = [sorted((r["tokens"][h0], label, r["tokens"][t0]) for h0, _, t0, _, label in r["relations"])
                for r in RECORDS]
    docs = list(nlp.pipe(texts))
    assert [triples(doc) for doc in docs] == expected
    scores = [record["score"] for doc in docs for record in get_relations(doc)]
    assert all(0.5 < s <= 1.0 for s in scores)
    assert nlp.evaluate(egs)["rel_micro_f"] == 1.0
    nlp.to_disk(tmp_path / "pipe")
    loaded = spacy.load(tmp_path / "pipe")
    for text, doc in zip(texts, docs):
        again = loaded(text)
        assert triples(again) == triples(doc)
        numpy.testing.assert_allclose([r["score"] for r in get_relations(again)],
                                      [r["score"] for r in get_relations(doc)], rtol=1e-4, atol=1e-5)
    # a load-time threshold is a runtime setting: the saved (null) one does not come back over it
    strict = spacy.load(tmp_path / "pipe", config={"components": {"spanbert_rel": {"threshold": 0.999999}}})
    assert strict.get_pipe("spanbert_rel").cfg["threshold"] == 0.999999
    assert sum(len(get_relations(d)) for d in strict.pipe(texts)) < sum(len(get_relations(d)) for d in docs)


def test_relations_survive_a_docbin_and_render(trained):
    nlp, _ = trained
    doc = nlp("Mary works for Google in Paris .")
    restored = list(DocBin(store_user_data=True, docs=[doc]).get_docs(nlp.vocab))[0]
    assert get_relations(restored) == get_relations(doc) and triples(restored) == triples(doc)
    graph = relation_graph(doc)
    assert [w["text"] for w in graph["words"]] == [t.text for t in doc]
    assert {arc["label"].split()[0] for arc in graph["arcs"]} == {"Work_For", "OrgBased_In"}
    svg = render_relations(doc)
    assert svg.startswith("<svg") and "Work_For" in svg and "Peop" in svg


def test_empty_docs_and_docs_with_one_entity_get_no_relations(trained):
    nlp, _ = trained
    empty, single, none = nlp.pipe(["", "John slept .", "It rained ."])
    assert get_relations(empty) == [] and get_relations(single) == [] and get_relations(none) == []


def test_candidates_stay_in_a_sentence_and_within_the_distance():
    nlp = spacy.blank("en")
    doc = Doc(nlp.vocab, words="A b C . D e f g H".split(), sent_starts=[1, 0, 0, 0, 1, 0, 0, 0, 0])
    ents = [doc[0:1], doc[2:3], doc[4:5], doc[8:9]]
    assert candidate_pairs(doc, ents, max_distance=10, within_sentence=True) == [(0, 1), (1, 0), (2, 3), (3, 2)]
    assert candidate_pairs(doc, ents, max_distance=2, within_sentence=True) == [(0, 1), (1, 0)]
    unsegmented = Doc(nlp.vocab, words="A b C . D".split())  # no sentence boundaries: one segment
    assert len(candidate_pairs(unsegmented, [unsegmented[0:1], unsegmented[4:5]], 10, True)) == 2


def test_nested_spans_from_a_spans_group_pair_up(tiny_bert_dir):
    records = [{"tokens": ["Bank", "of", "Boston", "hired", "John", "."],
                "entities": [[0, 3, "Org"], [2, 3, "Loc"], [4, 5, "Peop"]],
                "relations": [[0, 3, 2, 3, "OrgBased_In"], [4, 5, 0, 3, "Work_For"]]}] * 2
    nlp = spacy.blank("en")
    nlp.add_pipe("transformer", config=transformer_config(tiny_bert_dir))
    nlp.add_pipe("spanbert_rel", config={"model": {"hidden_width": 32}, "spans_key": "sc"})
    refs = [record_to_doc(nlp.vocab, r, "nested", spans_key="sc") for r in records]
    egs = [Example(Doc(nlp.vocab, words=[t.text for t in r]), r) for r in refs]
    with pytest.raises(ValueError, match="no component before it writes doc.spans"):
        nlp.initialize(lambda: egs)
    # entities arrive in the predicted docs' group (as from spanbert_spancat); initialise without the pipeline check
    fix_random_seed(0)
    optimizer = nlp.get_pipe("transformer").initialize(lambda: egs) or nlp.create_optimizer()
    nlp.get_pipe("spanbert_rel").initialize(lambda: egs)
    optimizer.learn_rate = 3e-3
    for _ in range(60):
        nlp.update(egs, sgd=optimizer, losses={})
    doc = Doc(nlp.vocab, words=records[0]["tokens"])
    doc.spans["sc"] = [doc[0:3], doc[2:3], doc[4:5]]
    for span, label in zip(doc.spans["sc"], ("Org", "Loc", "Peop")):
        span.label_ = label
    doc = nlp(doc)
    assert triples(doc) == [("Bank of Boston", "OrgBased_In", "Boston"), ("John", "Work_For", "Bank of Boston")]


def test_bad_input_is_one_line_naming_the_fix(tiny_bert_dir):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="not an entity of its sentence") as err:
        record_to_doc(nlp.vocab, {"tokens": ["a", "b"], "entities": [[0, 1, "X"]],
                                  "relations": [[0, 1, 1, 2, "R"]]}, "train.json record 7")
    assert "train.json record 7" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="spans key"):
        record_to_doc(nlp.vocab, {"tokens": ["a", "b"], "entities": [[0, 2, "X"], [1, 2, "Y"]]}, "r")
    # no entity source before the component
    alone = spacy.blank("en")
    alone.add_pipe("transformer", config=transformer_config(tiny_bert_dir))
    alone.add_pipe("spanbert_rel", config={"model": {"hidden_width": 32}})
    with pytest.raises(ValueError, match="no component before it writes doc.ents") as err:
        alone.initialize(lambda: examples(alone))
    assert "\n" not in str(err.value) and "add spanbert_ner" in str(err.value)
    # an unknown doc.spans key at prediction
    keyed = rel_pipeline(tiny_bert_dir, spans_key="missing")
    with pytest.raises(ValueError, match="doc.spans has no key 'missing'"):
        keyed.get_pipe("spanbert_rel").predict([keyed.make_doc("John lives in Boston .")])


def test_unseen_dev_labels_are_named_once(trained):
    nlp, egs = trained
    odd = examples(nlp, [{"tokens": ["John", "killed", "Mary", "."], "entities": [[0, 1, "Peop"], [2, 3, "Peop"]],
                          "relations": [[0, 1, 2, 3, "Kill"]]}])
    with pytest.warns(UserWarning, match="Kill") as caught:
        scores = nlp.evaluate(odd)
    assert len([w for w in caught if "training never saw" in str(w.message)]) == 1
    assert scores["rel_micro_r"] == 0.0


def test_gold_set_by_hand_round_trips_through_set_relations():
    nlp = spacy.blank("en")
    doc = nlp("Ann met Bob")
    doc.ents = [doc.char_span(0, 3, "Peop"), doc.char_span(8, 11, "Peop")]
    from spacy_spanbert.relations import make_record

    set_relations(doc, [make_record(doc.ents[1], doc.ents[0], "Knows", 0.7)])
    assert triples(doc) == [("Bob", "Knows", "Ann")]


def test_type_constraints_keep_labels_to_the_entity_types_seen_in_training(trained):
    nlp, _ = trained
    pipe = nlp.get_pipe("spanbert_rel")
    assert pipe.cfg["allowed_types"]["Live_In"] == [["Peop", "Loc"]]
    doc = nlp.make_doc("Boston near John")
    doc.ents = [doc.char_span(0, 6, "Loc"), doc.char_span(12, 16, "Peop")]
    probs = numpy.zeros((1, len(pipe.labels) + 1), dtype="f")
    probs[0, pipe.labels.index("Live_In")] = 0.9  # Live_In from a Loc to a Peop: never seen in training
    probs[0, -1] = 0.1
    candidates = [(list(doc.ents), [(0, 1)])]
    pipe.set_annotations([doc], (candidates, pipe.model.ops.asarray2f(probs)))
    assert triples(doc) == [("Boston", "Live_In", "John")]
    pipe.cfg["type_constraints"] = True
    try:
        pipe.set_annotations([doc], (candidates, pipe.model.ops.asarray2f(probs)))
        assert triples(doc) == []
    finally:
        pipe.cfg["type_constraints"] = False


def test_a_batch_without_pairs_still_sends_the_transformer_its_gradient(trained):
    """The shared transformer waits for every listener's gradient, so spanbert_rel runs its backward on every batch:
    on one whose docs hold fewer than two entities it is a zero gradient, and it must not fail."""
    nlp, _ = trained
    egs = examples(nlp, [{"tokens": ["John", "slept", "."], "entities": [[0, 1, "Peop"]], "relations": []}])
    losses = nlp.update(egs, sgd=nlp.create_optimizer(), losses={})
    assert losses["spanbert_rel"] == 0.0 and "transformer" in losses


def _partly_wrong_dev(nlp):
    """The training records with one gold relation relabelled and one dropped (3 gold relations left): the overfit
    pipeline writes four relations on them and gets two right."""
    records = [dict(r) for r in RECORDS]
    records[1] = dict(records[1], relations=[[0, 1, 3, 4, "Live_In"], [3, 4, 5, 6, "OrgBased_In"]])
    records[2] = dict(records[2], relations=[])
    return examples(nlp, records)


def test_calibration_fits_a_temperature_that_keeps_the_relations_and_is_saved(trained, tmp_path):
    from spacy_spanbert.cli.calibrate import run_calibrate

    nlp, _ = trained
    nlp.to_disk(tmp_path / "pipe")
    texts = [" ".join(r["tokens"]) for r in RECORDS]
    before = [get_relations(doc) for doc in nlp.pipe(texts)]
    dev = tmp_path / "dev.spacy"
    DocBin(store_user_data=True, docs=[eg.reference for eg in _partly_wrong_dev(nlp)]).to_disk(dev)
    result = run_calibrate(tmp_path / "pipe", dev, tmp_path / "calibrated")
    assert result["component"] == "spanbert_rel" and result["n_relations"] == 4 and result["n_gold"] == 3
    # half of its confident relations are wrong: the fitted temperature softens the scores
    assert result["temperature"] > 1.0 and result["nll_after"] < result["nll_before"]
    assert result["ece_after"] < result["ece_before"]
    calibrated = spacy.load(tmp_path / "calibrated")
    assert calibrated.get_pipe("spanbert_rel").cfg["temperature"] == pytest.approx(result["temperature"], rel=1e-12)
    after = [get_relations(doc) for doc in calibrated.pipe(texts)]
    strip = lambda docs: [[{k: v for k, v in r.items() if k != "score"} for r in rels] for rels in docs]  # noqa: E731
    assert strip(after) == strip(before)  # a temperature changes the scores, never the relations
    old, new = [r["score"] for rels in before for r in rels], [r["score"] for rels in after for r in rels]
    assert len(new) == 4 and all(n < o for n, o in zip(new, old))


def test_multi_label_relations_get_per_label_platt_scaling(tiny_bert_dir):
    from spacy_spanbert.pipeline.calibration import calibrate

    nlp = rel_pipeline(tiny_bert_dir, multi_label=True)
    train(nlp, examples(nlp))
    result = calibrate(nlp, _partly_wrong_dev(nlp))
    pipe = nlp.get_pipe("spanbert_rel")
    assert len(result["temperature"]) == len(result["calibration_bias"]) == len(pipe.labels)
    assert pipe.cfg["temperature"] == result["temperature"]
    # Work_For has no positive pair left in this dev set, so its map stays the identity; OrgBased_In (right for
    # Google -> Paris, wrong for Google -> Boston) gets a map, which the component applies to its logits
    k, m = pipe.labels.index("Work_For"), pipe.labels.index("OrgBased_In")
    assert (result["temperature"][k], result["calibration_bias"][k]) == (1.0, 0.0)
    assert (result["temperature"][m], result["calibration_bias"][m]) != (1.0, 0.0)
    docs = [nlp.get_pipe("entity_ruler")(nlp.make_doc(text)) for text in ("Mary works for Google in Paris .",
                                                                         "Google is based in Boston .")]
    logits = pipe.model.ops.to_numpy(pipe.logits(docs)[1])
    probs = pipe.model.ops.to_numpy(pipe.predict(docs)[1])
    a, b = 1 / numpy.asarray(result["temperature"]), numpy.asarray(result["calibration_bias"])
    numpy.testing.assert_allclose(probs, 1 / (1 + numpy.exp(-(a * logits + b))), rtol=1e-5)


def marker_pipeline(bert_dir, **rel_config) -> Language:
    """The entity ruler and spanbert_rel on typed markers, with an encoder of its own (no shared transformer)."""
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns(PATTERNS)
    nlp.add_pipe("spanbert_rel", config={"model": {"@architectures": "spacy-spanbert.MarkerRelationModel.v1",
                                                   "name": str(bert_dir), "case_types": True, "max_pairs": 2},
                                         **rel_config})
    return nlp


def test_markers_sit_at_their_arguments_wordpieces_in_windows_that_hold_both(tiny_bert_dir):
    """<S:type> and </S:type> take the position ids of the head's first and last wordpiece, <O:...> the tail's; a
    doc longer than `window` is read in a window that holds both arguments."""
    from transformers import AutoTokenizer

    from spacy_spanbert.models.marker_inputs import marked_sequences

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    nlp = spacy.blank("en")
    doc = nlp.make_doc("Mary Smith works for Google in Paris while Anna lives far away in the old town of Boston .")
    rows = numpy.array([[0, 2, 4, 5, 0, 1], [8, 9, 17, 18, 0, 2]])  # (Mary Smith, Google), (Anna, Boston)
    # window 64 holds the doc; window 8 (grid stride 4): [0, 8) holds the first pair, the second spans 10 tokens
    for window, expected in ((64, {(0, 1): (0, 19)}), (8, {(0,): (0, 8), (1,): (8, 18)})):
        sequences = marked_sequences([doc], rows, numpy.array([2]), tokenizer, None, 3, window, max_pairs=16)
        assert {tuple(s.pairs) for s in sequences} == set(expected)
        for seq in sequences:
            start, end = expected[tuple(seq.pairs)]
            words = tokenizer(doc[start:end].text, return_offsets_mapping=True)
            for p, k in enumerate(seq.pairs):
                hs, he, ts, te, ht, tt = rows[k]
                marks = slice(seq.n_text + 4 * p, seq.n_text + 4 * p + 4)
                pieces = [words.char_to_token(doc[i].idx - doc[start].idx) for i in (hs, he - 1, ts, te - 1)]
                last = [words.char_to_token(doc[i].idx - doc[start].idx + len(doc[i]) - 1) for i in (he - 1, te - 1)]
                assert list(seq.positions[marks]) == [pieces[0], last[0], pieces[2], last[1]]
                assert list(seq.marker_ids[marks]) == [ht, 3 + ht, 6 + tt, 9 + tt]
                assert (seq.marker_ids[: seq.n_text] == -1).all() and seq.n_text == len(words["input_ids"])


def test_marker_model_reads_long_sequences_without_case_types(tiny_bert_dir):
    """More marker slots than the encoder has positions (64 markers after a 70-wordpiece text, 128 positions):
    markers reuse the text's position ids, and token types are passed for every slot."""
    nlp = marker_pipeline(tiny_bert_dir)
    nlp.get_pipe("spanbert_rel").model.get_ref("encoder").attrs["max_pairs"] = 16
    egs = examples(nlp)
    train(nlp, egs, steps=2)
    nlp2 = spacy.blank("en")
    nlp2.add_pipe("entity_ruler").add_patterns(PATTERNS)
    nlp2.add_pipe("spanbert_rel", config={"model": {"@architectures": "spacy-spanbert.MarkerRelationModel.v1",
                                                    "name": str(tiny_bert_dir), "case_types": False}})
    train(nlp2, examples(nlp2), steps=2)
    text = " ".join(["John met Mary and Google in Boston ;"] * 9)
    for pipeline in (nlp, nlp2):
        doc = pipeline(text)
        assert len(doc.ents) == 36 and isinstance(get_relations(doc), list)


def test_marker_model_overfits_saves_loads_and_pickles(tiny_bert_dir, tmp_path):
    import pickle

    nlp = marker_pipeline(tiny_bert_dir)
    egs = examples(nlp)
    train(nlp, egs, steps=80)
    texts = [" ".join(r["tokens"]) for r in RECORDS]
    docs = list(nlp.pipe(texts))
    expected = [sorted((r["tokens"][h0], label, r["tokens"][t0]) for h0, _, t0, _, label in r["relations"])
                for r in RECORDS]
    assert [triples(doc) for doc in docs] == expected
    assert nlp.evaluate(egs)["rel_micro_f"] == 1.0
    # levitated markers: text never attends to markers and a pair's markers only to their own, so a pair scores the
    # same whether its segment carries 1 pair or all of them (and in whichever call it is batched)
    pipe = nlp.get_pipe("spanbert_rel")
    ruled = [nlp.get_pipe("entity_ruler")(nlp.make_doc(text)) for text in texts]
    by_two = pipe.model.ops.to_numpy(pipe.logits(ruled)[1])
    pipe.model.get_ref("encoder").attrs["max_pairs"] = 16
    numpy.testing.assert_allclose(pipe.model.ops.to_numpy(pipe.logits(ruled)[1]), by_two, rtol=1e-4, atol=1e-4)
    pipe.model.get_ref("encoder").attrs["max_pairs"] = 2
    nlp.to_disk(tmp_path / "pipe")
    for loaded in (spacy.load(tmp_path / "pipe"), pickle.loads(pickle.dumps(nlp))):
        for text, doc in zip(texts, docs):
            again = loaded(text)
            assert triples(again) == triples(doc)
            numpy.testing.assert_allclose([r["score"] for r in get_relations(again)],
                                          [r["score"] for r in get_relations(doc)], rtol=1e-4, atol=1e-5)


def test_marker_model_bad_settings_are_one_line(tiny_bert_dir):
    with pytest.raises(ValueError, match="max_pairs and window must be at least 1") as err:
        spacy.registry.architectures.get("spacy-spanbert.MarkerRelationModel.v1")(name=str(tiny_bert_dir), max_pairs=0)
    assert "\n" not in str(err.value)

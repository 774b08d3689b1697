"""Both components on a GPU's code path without a GPU: every array stays a device array (see device_ops.py); where a
GPU exists, a GPU-trained pipeline loads on the GPU and on the CPU. (The scorer's device: tests/models/test_scorer_layer.py.)"""
import numpy
import pytest
import spacy
import torch
from device_ops import DeviceArray, HostArrayError, device_ops
from span_helpers import NER_DATA, component_config, ents, ner_examples, train
from test_span_spancat import SPANCAT_DATA, make_examples, spans_of
from thinc.api import get_current_ops

FACTORIES = [("spanbert_ner", ner_examples, "spanbert_ents"), ("spanbert_spancat", make_examples, "sc")]


def test_the_double_catches_host_arrays():
    with device_ops() as ops:
        host = numpy.zeros((3, 2), dtype="f")
        with pytest.raises(HostArrayError):
            ops.unflatten(host, ops.asarray1i([1, 2]))
        with pytest.raises(HostArrayError):
            ops.asarray2f(host) + host
        with pytest.raises(HostArrayError):
            ops.xp.hstack([ops.asarray2f(host), host])
        with pytest.raises(HostArrayError):  # cupy refuses the implicit device -> host conversion
            numpy.isin(ops.asarray2f(host), [0.0])
        assert isinstance(ops.unflatten(ops.asarray2f(host), ops.asarray1i([1, 2]))[0], DeviceArray)
    assert not isinstance(get_current_ops(), type(ops))


@pytest.mark.parametrize("factory,make,key", FACTORIES)
def test_train_predict_and_serialise_with_device_arrays(tiny_bert_dir, factory, make, key):
    """initialize, update (loss and backprop), predict, set_annotations and a bytes round trip under DeviceOps."""
    with device_ops():
        nlp = spacy.blank("en")
        nlp.add_pipe(factory, config=component_config(tiny_bert_dir, threshold=0.0 if key == "sc" else None))
        examples = make(nlp)
        losses = train(nlp, examples, steps=3)
        assert losses[factory] > 0
        pipe = nlp.get_pipe(factory)
        indices, probs = pipe.predict([eg.predicted for eg in examples])
        assert isinstance(probs, DeviceArray)
        docs = list(nlp.pipe([eg.text for eg in examples] + ["", "  "]))
        for doc in docs:
            assert len(doc.spans[key].attrs["scores"]) == len(doc.spans[key])
        copy = spacy.blank("en")
        copy.add_pipe(factory, config=component_config(tiny_bert_dir, threshold=0.0 if key == "sc" else None))
        copy.from_bytes(nlp.to_bytes())
        again = list(copy.pipe([eg.text for eg in examples]))
        for a, b in zip(docs, again):
            numpy.testing.assert_allclose(a.spans[key].attrs["scores"], b.spans[key].attrs["scores"], rtol=1e-5)


def test_a_mixed_precision_pipeline_trains_and_loads_on_a_cpu(tiny_bert_dir, tmp_path):
    """mixed_precision is CUDA autocast: a pipeline configured for it on a GPU must still train and load on a CPU
    (thinc's gradient scaler refuses to run without CUDA, so it is only enabled where CUDA is)."""
    config = component_config(tiny_bert_dir, model={"mixed_precision": True})
    config["model"]["tok2vec"]["mixed_precision"] = True
    nlp = spacy.blank("en")
    nlp.add_pipe("spanbert_ner", config=config)
    losses = train(nlp, ner_examples(nlp), steps=2)
    assert losses["spanbert_ner"] > 0
    nlp.to_disk(tmp_path / "amp")
    text = NER_DATA[0][0]
    assert ents(spacy.load(tmp_path / "amp")(text)) == ents(nlp(text))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("factory,make,key", FACTORIES)
def test_gpu_trained_pipeline_loads_on_gpu_and_cpu(tiny_bert_dir, tmp_path, factory, make, key):
    from thinc.api import NumpyOps, require_gpu, set_current_ops

    require_gpu(0)
    try:
        nlp = spacy.blank("en")
        nlp.add_pipe(factory, config=component_config(tiny_bert_dir))
        train(nlp, make(nlp), steps=150)
        texts = [text for text, _ in (NER_DATA if key != "sc" else SPANCAT_DATA)]
        read = ents if key != "sc" else spans_of
        gold = [read(doc) for doc in nlp.pipe(texts)]
        nlp.to_disk(tmp_path / "gpu")
        assert [read(doc) for doc in spacy.load(tmp_path / "gpu").pipe(texts)] == gold
    finally:
        set_current_ops(NumpyOps())
    on_cpu = spacy.load(tmp_path / "gpu")
    assert [read(doc) for doc in on_cpu.pipe(texts)] == gold


def _train_three_steps(nlp) -> None:
    from test_relations import PATTERNS, examples

    egs = examples(nlp)
    optimizer = nlp.initialize(lambda: egs)
    nlp.get_pipe("entity_ruler").add_patterns(PATTERNS)  # initialize empties the ruler
    losses = {}
    for _ in range(3):
        nlp.update(egs, sgd=optimizer, losses=losses)
    assert losses["spanbert_rel"] > 0


def test_relations_train_and_predict_with_device_arrays(tiny_bert_dir):
    """spanbert_rel with its own transformer: update, predict and set_annotations keep device arrays on the device."""
    from test_relations import PATTERNS, triples

    with device_ops():
        nlp = spacy.blank("en")
        nlp.add_pipe("entity_ruler").add_patterns(PATTERNS)
        tok2vec = component_config(tiny_bert_dir)["model"]["tok2vec"]
        nlp.add_pipe("spanbert_rel", config={"model": {"hidden_width": 32, "tok2vec": {
            "@architectures": "spacy-spanbert.SpanBERT.v4", "case_types": True, **tok2vec,
            "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", **tok2vec["get_spans"]}}}})
        _train_three_steps(nlp)
        candidates, probs = nlp.get_pipe("spanbert_rel").predict([nlp("Mary works for Google in Paris .")])
        assert isinstance(probs, DeviceArray) and probs.shape[0] == len(candidates[0][1]) > 0
        docs = list(nlp.pipe(["Mary works for Google in Paris .", ""]))
        assert all(isinstance(triples(doc), list) for doc in docs)


def test_marker_relations_train_and_predict_with_device_arrays(tiny_bert_dir):
    """spanbert_rel on typed markers: its pair vectors, their reordering and gradients stay device arrays."""
    from test_relations import marker_pipeline, triples

    with device_ops():
        nlp = marker_pipeline(tiny_bert_dir)
        _train_three_steps(nlp)
        candidates, probs = nlp.get_pipe("spanbert_rel").predict([nlp("Mary works for Google in Paris .")])
        assert isinstance(probs, DeviceArray) and probs.shape[0] == len(candidates[0][1]) == 6
        docs = list(nlp.pipe(["Mary works for Google in Paris .", "", "John ."]))
        assert all(isinstance(triples(doc), list) for doc in docs)

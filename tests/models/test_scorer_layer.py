"""The thinc layer around SpanScorer: built at init on the Ops' device, width from the suggester, safetensors."""
import numpy
import pytest
import torch
from thinc.api import NumpyOps
from thinc.types import Ragged

from spacy_spanbert.models import scorer_layer
from spacy_spanbert.models.scorer_layer import (
    build_span_scorer,
    deserialize_scorer,
    fit_max_width,
    get_torch_scorer,
    serialize_scorer,
)
from spacy_spanbert.models.torch_shim import torch_module
from spacy_spanbert.nn.span_scorer import SpanScorer


def initialised(max_width=4, use_interior=True, hidden_width=8, seed=0):
    torch.manual_seed(seed)
    layer = build_span_scorer(hidden_width=hidden_width, max_width=max_width, use_interior=use_interior, dropout=0.0)
    ops = layer.ops
    spans = Ragged(ops.asarray2i([[0, 1], [1, 3], [0, 2]]), ops.asarray1i([2, 1]))
    X = ([ops.alloc2f(4, 6) + 0.5, ops.alloc2f(3, 6) - 0.5], spans)
    layer.initialize(X=X, Y=ops.alloc2f(3, 3))
    return layer, X


def test_scorer_is_built_on_the_device_of_the_current_ops(monkeypatch):
    """Freshly built parameters are on the CPU; the scorer must move to the Ops' device (a GPU under CupyOps),
    not to the device its new parameters report (the bug that broke `spacy train --gpu-id 0`)."""
    monkeypatch.setattr(scorer_layer, "get_torch_default_device", lambda: torch.device("meta"))
    layer = build_span_scorer(hidden_width=8, max_width=4, use_interior=True, dropout=0.0)
    ops = layer.ops
    spans = Ragged(ops.asarray2i([[0, 1], [1, 3]]), ops.asarray1i([2]))
    layer.initialize(X=([ops.alloc2f(4, 6)], spans), Y=ops.alloc2f(2, 3))
    assert {p.device.type for p in get_torch_scorer(layer).parameters()} == {"meta"}


def test_forward_and_backward_offsets_per_doc():
    """Each doc's (start, end) rows index its own tokens: the second doc's span reads the second doc's vectors, and
    the gradient reaches exactly the boundary tokens of the scored spans."""
    layer, (vectors, spans) = initialised(use_interior=False)
    logits, backprop = layer.begin_update((vectors, spans))
    assert logits.shape == (3, 3)
    d_vectors, _ = backprop(numpy.ones_like(logits))
    assert [d.shape for d in d_vectors] == [(4, 6), (3, 6)]
    touched = [numpy.abs(d).sum(axis=1) > 0 for d in d_vectors]
    # doc 0: spans [0,1) and [1,3) use tokens 0 (start+end), 1 (start) and 2 (end); doc 1: [0,2) uses 0 and 1
    assert touched[0].tolist() == [True, True, True, False]
    assert touched[1].tolist() == [True, True, False]


def test_unbuilt_scorer_says_initialise():
    layer = build_span_scorer(hidden_width=8, max_width=4, use_interior=False, dropout=0.0)
    with pytest.raises(ValueError, match="nlp.initialize"):
        get_torch_scorer(layer)


def test_width_follows_the_suggester_or_must_cover_it():
    layer = build_span_scorer(hidden_width=8, max_width=None, use_interior=False, dropout=0.0)
    with pytest.raises(ValueError, match=r"set \[components.ner.model\] max_width"):
        fit_max_width(layer, None, "ner")
    fit_max_width(layer, 7, "ner")
    assert layer.attrs["max_width"] == 7
    fixed = build_span_scorer(hidden_width=8, max_width=5, use_interior=False, dropout=0.0)
    with pytest.raises(ValueError, match="max_width=5 is smaller than the suggester's max_width=7"):
        fit_max_width(fixed, 7, "ner")
    fit_max_width(fixed, 5, "ner")


def test_safetensors_round_trip_rebuilds_the_module():
    layer, _ = initialised()
    model = get_torch_scorer(layer).eval()
    data = serialize_scorer(torch_module(layer.layers[0]))
    assert not data.startswith(b"PK")  # not a torch.save zip of pickles
    fresh = build_span_scorer(hidden_width=8, max_width=None, use_interior=True, dropout=0.0)  # width from the file
    loaded = deserialize_scorer(torch_module(fresh.layers[0]), data, torch.device("cpu")).inner.eval()
    assert isinstance(loaded, SpanScorer) and loaded.max_width == 4 and get_torch_scorer(fresh) is loaded
    tokens = torch.randn(6, 6)
    starts, ends = torch.tensor([0, 1, 2]), torch.tensor([1, 4, 6])
    torch.testing.assert_close(loaded(tokens, starts, ends), model(tokens, starts, ends))
    for hidden_width, max_width, use_interior in [(16, 4, True), (8, 6, True), (8, 4, False)]:
        other = build_span_scorer(hidden_width=hidden_width, max_width=max_width, use_interior=use_interior,
                                  dropout=0.0)
        with pytest.raises(ValueError, match="saved pipeline's config"):
            deserialize_scorer(torch_module(other.layers[0]), data, torch.device("cpu"))
    whole = build_span_scorer(hidden_width=8, max_width=4, use_interior=True, dropout=0.0)
    whole.from_bytes(layer.to_bytes())
    assert isinstance(get_torch_scorer(whole), SpanScorer) and whole.attrs["max_width"] == 4


def test_mixed_precision_scorer_trains_on_a_cpu():
    """A pipeline configured for mixed precision on a GPU must still train and load where there is none."""
    layer = build_span_scorer(hidden_width=8, max_width=4, use_interior=False, dropout=0.0, mixed_precision=True)
    ops = layer.ops
    spans = Ragged(ops.asarray2i([[0, 1], [1, 3]]), ops.asarray1i([2]))
    layer.initialize(X=([ops.alloc2f(4, 6)], spans), Y=ops.alloc2f(2, 3))
    logits, backprop = layer.begin_update(([ops.alloc2f(4, 6) + 1.0], spans))
    (d_vectors, _) = backprop(ops.alloc2f(*logits.shape) + 1.0)
    assert d_vectors[0].shape == (4, 6) and numpy.abs(d_vectors[0]).sum() > 0

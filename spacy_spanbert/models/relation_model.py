"""`spacy-spanbert.RelationModel.v1`: thinc glue from (docs, candidate argument pairs) to relation logits.

    (docs, pairs) -> with_getitem(0, tok2vec) -> (token vectors per doc, pairs) -> relation scorer -> logits

`pairs` is a Ragged of int rows (head start, head end, tail start, tail end, head type, tail type), one group per
doc, in that doc's token offsets. The tok2vec is a `spacy-transformers.TransformerListener.v1` (the shared
`transformer`) or any layer giving token vectors per doc. The torch `RelationScorer` is built at initialisation,
when the width, label and entity-type counts are known, and saved as safetensors with its shape in the header.
"""
from typing import Any, Callable, List, Tuple

import torch
from thinc.api import (
    ArgsKwargs,
    Model,
    chain,
    get_torch_default_device,
    with_getitem,
    xp2torch,
)
from thinc.types import Floats2d, Ragged

from ..nn.relation_scorer import REPRESENTATIONS, RelationScorer
from .span_model import as_token_vectors
from .torch_bridge import cpu_state, flat_tokens, safetensors_metadata, tensor_outputs
from .torch_shim import LazyModule, torch_layer, torch_module

InT = Tuple[List[Any], Ragged]
OutT = Floats2d
LAYER_NAME = "spanbert_relation_scorer"
_SHAPE_KEYS = ("n_in", "n_out", "n_types", "hidden_width", "max_width", "max_context")


def build_relation_model(
    tok2vec: Model,
    hidden_width: int = 256,
    max_width: int = 16,
    max_context: int = 64,
    dropout: float = 0.1,
    representation: str = "boundary_context",
) -> Model[InT, OutT]:
    """Score ordered pairs of entity spans from the shared transformer's token vectors.

    tok2vec (Model[List[Doc], List[Floats2d]]): Token vectors, e.g. a TransformerListener; a bare SpanBERT
        transformer (the component's own) is mean-pooled over its wordpieces.
    hidden_width (int): Width of the pair MLP's hidden layer.
    max_width (int): Argument widths embedded (longer arguments share the last row).
    max_context (int): Tokens between the two arguments that are max-pooled (the first ones).
    dropout (float): Dropout after the hidden layer, in training only.
    representation (str): "boundary_context" (boundaries, width, entity type, pooled context and distance) or
        "mean_pooled" (the mean of each argument's vectors, concatenated: spaCy's tutorial's baseline).
    RETURNS (Model[Tuple[List[Doc], Ragged], Floats2d]): One logit per label (plus "no relation" when softmax).
    """
    if representation not in REPRESENTATIONS:
        raise ValueError(f"RelationModel representation = {representation!r} is not one of {REPRESENTATIONS}")
    wrapper = torch_layer(  # thinc's PyTorchWrapper on our shim, whose parameter averages reach the scorer
        LazyModule("relation scorer", dropout=dropout, representation=representation),
        convert_inputs=_convert_inputs,
        convert_outputs=tensor_outputs,
        serialize_model=_serialize,
        deserialize_model=_deserialize,
    )
    scorer = Model(
        LAYER_NAME,
        _forward,
        init=_init,
        layers=[wrapper],
        dims={"nI": None, "nO": None},
        attrs={"hidden_width": hidden_width, "max_width": max_width, "max_context": max_context,
               "dropout": dropout, "representation": representation, "n_types": None},
    )
    tok2vec = as_token_vectors(tok2vec)
    model: Model[InT, OutT] = chain(with_getitem(0, tok2vec), scorer)
    model.set_ref("tok2vec", tok2vec)
    model.set_ref("scorer", scorer)
    return model


def get_relation_scorer(model: Model) -> RelationScorer:
    """The torch `RelationScorer` of a relation model, once initialised or loaded."""
    module = torch_module(model.get_ref("scorer").layers[0]).inner
    if module is None:
        raise ValueError("The relation scorer is not built yet: initialise the component (nlp.initialize) first")
    return module


def set_entity_types(model: Model, n_types: int) -> None:
    """The number of entity-type ids the relation model embeds (the component's entity labels + 1 for unseen
    types), for each of its layers that embeds them (the scorer; the marker model's encoder)."""
    for node in model.walk():
        if "n_types" in node.attrs:
            node.attrs["n_types"] = int(n_types)


def _forward(model: Model, X: Tuple[List[Floats2d], Ragged], is_train: bool) -> Tuple[Floats2d, Callable]:
    return model.layers[0](X, is_train)


def _init(model: Model, X: Any = None, Y: Any = None) -> None:
    if X is not None and len(X[0]):
        model.set_dim("nI", int(X[0][0].shape[1]))
    if Y is not None:
        model.set_dim("nO", int(Y.shape[1]))
    attrs = model.attrs
    if not model.has_dim("nI") or not model.has_dim("nO") or attrs["n_types"] is None:
        raise ValueError("The relation scorer needs example docs, labels and entity types to initialise: call "
                         "nlp.initialize(get_examples)")
    slot = torch_module(model.layers[0])
    if slot.inner is not None:
        return
    slot.build(RelationScorer(model.get_dim("nI"), model.get_dim("nO"), attrs["n_types"], attrs["hidden_width"],
                              attrs["max_width"], attrs["max_context"], attrs["dropout"],
                              attrs["representation"]).to(get_torch_default_device()))


def _convert_inputs(model: Model, X: Tuple[List[Floats2d], Ragged], is_train: bool) -> Tuple[ArgsKwargs, Callable]:
    """Flatten the docs' token vectors and shift each doc's pair offsets by its first row in the flat matrix."""
    vectors, pairs = X
    ops = model.ops
    rows = xp2torch(ops.as_contig(ops.asarray2i(pairs.dataXd.reshape((-1, 6)))), device=model.shims[0].device).long()
    tokens_t, offsets, backprop_tokens = flat_tokens(model, vectors, pairs.lengths, rows.shape[0], is_train)
    shift = torch.stack([offsets] * 4 + [torch.zeros_like(offsets)] * 2, dim=1)  # token columns, not the types

    def backprop(d_inputs: ArgsKwargs) -> Tuple[List[Floats2d], Ragged]:
        return backprop_tokens(d_inputs.args[0]), pairs

    return ArgsKwargs(args=(tokens_t, rows + shift), kwargs={}), backprop


def _serialize(slot: LazyModule) -> bytes:
    """safetensors bytes with the scorer's shape in the header (no pickles); an empty file before init."""
    from safetensors.torch import save

    scorer = slot.inner
    if scorer is None:
        return save({}, metadata={"n_in": "None"})
    state = cpu_state(scorer)
    meta = {key: str(int(getattr(scorer, key))) for key in _SHAPE_KEYS}
    meta["representation"] = scorer.representation
    return save(state, metadata=meta)


def _deserialize(slot: LazyModule, data: bytes, device: Any) -> LazyModule:
    from safetensors.torch import load

    meta = safetensors_metadata(data)
    if meta.get("n_in", "None") == "None":
        return slot
    configured = slot.settings
    if configured["representation"] != meta["representation"]:
        raise ValueError(f"The saved relation scorer is {meta['representation']!r} but the config builds "
                         f"{configured['representation']!r}: use the saved pipeline's config")
    module = RelationScorer(*(int(meta[key]) for key in _SHAPE_KEYS), dropout=configured["dropout"],
                            representation=meta["representation"])
    module.load_state_dict(load(data))
    slot.build(module.to(device))
    return slot

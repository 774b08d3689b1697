"""`spacy-spanbert.SpanBoundaryModel.v1`: thinc glue from (docs, suggested spans) to span logits.

    (docs, spans) -> with_getitem(0, tok2vec) -> (token vectors per doc, spans) -> span scorer -> logits

The tok2vec is a `spacy-transformers.TransformerListener.v1` (shared `transformer` component), a standalone
`spacy-transformers.Tok2VecTransformer.v3`, or a bare `spacy-spanbert.SpanBERT.v1` transformer, which is pooled to
token vectors here. The scorer is the pure torch `SpanScorer` behind a `PyTorchWrapper`, serialised as safetensors.
"""
import json
import struct
from typing import Any, Callable, List, Tuple

import numpy
from spacy.attrs import IS_DIGIT, IS_LOWER, IS_PUNCT, IS_TITLE, IS_UPPER
from spacy.tokens import Doc
from thinc.api import (
    ArgsKwargs,
    Model,
    PyTorchWrapper_v3,
    chain,
    get_torch_default_device,
    torch2xp,
    with_getitem,
    xp2torch,
)
from thinc.types import Floats2d, Ragged

InT = Tuple[List[Doc], Ragged]
OutT = Floats2d


def build_span_boundary_model(
    tok2vec: Model,
    hidden_width: int = 256,
    max_width: int = 10,
    use_interior: bool = False,
    dropout: float = 0.1,
    case_features: bool = False,
) -> Model[InT, OutT]:
    """Score suggested spans from their boundary token vectors, a width embedding and an optional pooled interior.

    tok2vec (Model[List[Doc], List[Floats2d]]): Token vectors; a bare transformer (FullTransformerBatch output) is
        mean-pooled over its wordpieces.
    hidden_width (int): Width of the span MLP's hidden layer.
    max_width (int): Size of the width embedding; wider spans share the last row (keep >= the suggester's).
    use_interior (bool): Add an attention-pooled interior to the boundary representation.
    dropout (float): Dropout after the hidden layer, in training only.
    case_features (bool): Append 5 orthographic flags per token (title, upper, lower, digit, punct): an uncased
        encoder such as MiniLM never sees capitalisation, one of the strongest cues for named entities.
    RETURNS (Model[Tuple[List[Doc], Ragged], Floats2d]): One logit per label (plus "none" for NER) per span.
    """
    tok2vec = _as_token_vectors(tok2vec)
    if case_features:
        tok2vec = with_case_features(tok2vec)
    scorer = build_span_scorer(hidden_width, max_width, use_interior, dropout)
    model: Model[InT, OutT] = chain(with_getitem(0, tok2vec), scorer)
    model.set_ref("tok2vec", tok2vec)
    model.set_ref("scorer", scorer)
    return model


def _as_token_vectors(tok2vec: Model) -> Model:
    """Pool a bare spacy-transformers TransformerModel to one vector per token; other layers pass through."""
    from spacy_transformers.layers.transformer_model import TransformerModel

    if isinstance(tok2vec, TransformerModel):
        from spacy_transformers.layers import split_trf_batch, trfs2arrays
        from thinc.api import reduce_mean

        return chain(tok2vec, split_trf_batch(), trfs2arrays(reduce_mean(), 1.0))
    return tok2vec


CASE_ATTRS = [IS_TITLE, IS_UPPER, IS_LOWER, IS_DIGIT, IS_PUNCT]


def with_case_features(tok2vec: Model) -> Model:
    """Append the tokens' orthographic flags (`CASE_ATTRS`, 0/1) to the token vectors; no parameters."""

    def forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[List[Floats2d], Callable]:
        vectors, backprop_tok2vec = model.layers[0](docs, is_train)
        flags = [model.ops.asarray2f(doc.to_array(CASE_ATTRS).reshape((len(doc), len(CASE_ATTRS)))) for doc in docs]
        width = vectors[0].shape[1] if vectors else 0
        output = [model.ops.xp.hstack([v, f]) for v, f in zip(vectors, flags)]

        def backprop(d_output: List[Floats2d]) -> Any:
            return backprop_tok2vec([model.ops.as_contig(d[:, :width]) for d in d_output])

        return output, backprop

    return Model("with_case_features", forward, layers=[tok2vec], init=_init_case_features, dims={"nO": None})


def _init_case_features(model: Model, X: Any = None, Y: Any = None) -> None:
    model.layers[0].initialize(X=X)
    if model.layers[0].has_dim("nO"):
        model.set_dim("nO", model.layers[0].get_dim("nO") + len(CASE_ATTRS))


def build_span_scorer(hidden_width: int, max_width: int, use_interior: bool, dropout: float) -> Model:
    """The `SpanScorer` behind a PyTorchWrapper; built at initialisation, when nI and nO are known."""
    from ..nn.span_scorer import SpanScorer

    torch_model = SpanScorer(hidden_width, max_width, use_interior, dropout)
    wrapper = PyTorchWrapper_v3(
        torch_model,
        convert_inputs=_convert_inputs,
        convert_outputs=_convert_outputs,
        serialize_model=serialize_scorer,
        deserialize_model=deserialize_scorer,
    )
    return Model(
        "spanbert_span_scorer",
        _scorer_forward,
        init=_scorer_init,
        layers=[wrapper],
        dims={"nI": None, "nO": None},
    )


def _scorer_forward(model: Model, X: Tuple[List[Floats2d], Ragged], is_train: bool) -> Tuple[Floats2d, Callable]:
    return model.layers[0](X, is_train)


def _scorer_init(model: Model, X: Any = None, Y: Any = None) -> None:
    if X is not None and len(X[0]):
        model.set_dim("nI", int(X[0][0].shape[1]))
    if Y is not None:
        model.set_dim("nO", int(Y.shape[1]))
    if not model.has_dim("nI") or not model.has_dim("nO"):
        raise ValueError("The span scorer needs example docs and labels to initialise: call nlp.initialize(get_examples)")
    torch_model = model.layers[0].shims[0]._model
    if not torch_model.is_built:
        # the device of the current Ops (a GPU under CupyOps), read BEFORE building: once the parameters exist, the
        # shim reports theirs, and freshly built parameters are on the CPU
        device = get_torch_default_device()
        torch_model.build(model.get_dim("nI"), model.get_dim("nO"))
        torch_model.to(device)


def _convert_inputs(model: Model, X: Tuple[List[Floats2d], Ragged], is_train: bool) -> Tuple[ArgsKwargs, Callable]:
    """Flatten the docs' token vectors and turn each doc's (start, end) rows into flat token indices."""
    import torch

    vectors, spans = X
    ops = model.ops
    lengths = [int(v.shape[0]) for v in vectors]
    tokens = ops.flatten(vectors) if vectors else ops.alloc2f(0, 0)
    device = model.shims[0].device
    tokens_t = xp2torch(tokens, requires_grad=is_train, device=device)
    # (start, end) rows are per doc: shift them by each doc's first row in the flat token matrix, on the device
    rows = xp2torch(ops.as_contig(ops.asarray2i(spans.dataXd.reshape((-1, 2)))), device=device).long()
    doc_starts = torch.tensor(numpy.cumsum([0] + lengths[:-1]), dtype=torch.long, device=device)
    counts = xp2torch(ops.asarray1i(spans.lengths), device=device).long()
    offsets = torch.repeat_interleave(doc_starts, counts, output_size=rows.shape[0])
    starts = rows[:, 0] + offsets
    ends = rows[:, 1] + offsets

    def backprop(d_inputs: ArgsKwargs) -> Tuple[List[Floats2d], Ragged]:
        d_tokens = ops.asarray2f(torch2xp(d_inputs.args[0], ops=ops))
        return ops.unflatten(d_tokens, ops.asarray1i(lengths)), spans

    return ArgsKwargs(args=(tokens_t, starts, ends), kwargs={}), backprop


def _convert_outputs(model: Model, inputs_outputs: Tuple[Any, Any], is_train: bool) -> Tuple[Floats2d, Callable]:
    _, logits_t = inputs_outputs
    logits = torch2xp(logits_t, ops=model.ops)

    def backprop(d_logits: Floats2d) -> ArgsKwargs:
        return ArgsKwargs(args=(logits_t,), kwargs={"grad_tensors": xp2torch(d_logits, device=logits_t.device)})

    return model.ops.asarray2f(logits), backprop


def serialize_scorer(torch_model: Any) -> bytes:
    """safetensors bytes with the rebuild information in the header metadata (no pickles)."""
    from safetensors.torch import save

    state = {k: v.detach().contiguous().cpu() for k, v in torch_model.state_dict().items()}
    return save(state, metadata=torch_model.describe())


def deserialize_scorer(torch_model: Any, data: bytes, device: Any) -> Any:
    """Rebuild the scorer from the safetensors metadata, then load its weights."""
    from safetensors.torch import load

    (header_len,) = struct.unpack("<Q", data[:8])
    meta = json.loads(data[8 : 8 + header_len].decode("utf8")).get("__metadata__", {})
    if meta.get("n_in", "None") != "None":
        saved = (int(meta["hidden_width"]), int(meta["max_width"]), bool(int(meta.get("use_interior", "0"))))
        wanted = (torch_model.hidden_width, torch_model.max_width, bool(torch_model.use_interior))
        if saved != wanted:
            raise ValueError(
                f"Saved span scorer has (hidden_width, max_width, use_interior) = {saved}, but the config says "
                f"{wanted}: use the saved pipeline's config"
            )
        if not torch_model.is_built:
            torch_model.build(int(meta["n_in"]), int(meta["n_out"]))
        torch_model.load_state_dict(load(data))
    return torch_model.to(device)

"""Thinc glue around the pure torch `SpanScorer`: built at initialisation, when the encoder width and the label
count are known (the pattern of spacy-experimental's coref), converted to and from the Ops' arrays on the Ops'
device, and serialised as safetensors whose header carries what is needed to rebuild it on load.

The component reaches the torch module and the width it was built for only through the functions here
(`get_torch_scorer`, `scorer_shims`, `fit_max_width`), never through the wrapper's internals.
"""
from typing import Any, Callable, List, Optional, Tuple

from thinc.api import (
    ArgsKwargs,
    Model,
    PyTorchGradScaler,
    get_current_ops,
    get_torch_default_device,
    xp2torch,
)
from thinc.shims import Shim
from thinc.types import Floats2d, Ragged

from ..nn.span_scorer import SpanScorer
from .torch_bridge import cpu_state, flat_tokens, safetensors_metadata, tensor_outputs
from .torch_shim import LazyModule, torch_layer, torch_module

SCORER_NAME = "spanbert_span_scorer"
_REBUILD_KEYS = ("n_in", "n_out", "hidden_width", "max_width", "use_interior")


def build_span_scorer(
    hidden_width: int, max_width: Optional[int], use_interior: bool, dropout: float, mixed_precision: bool = False
) -> Model[Tuple[List[Floats2d], Ragged], Floats2d]:
    """A layer holding a `SpanScorer` behind a PyTorchWrapper; the torch module is built in `init` (or on loading).

    max_width (Optional[int]): Rows of the width embedding; None takes the suggester's longest span (the component
        sets it through `fit_max_width` before initialising).
    mixed_precision (bool): Autocast the scorer on a GPU (with a gradient scaler, as spacy-transformers does).
    """
    wrapper = torch_layer(  # thinc's PyTorchWrapper on our shim, whose parameter averages reach the scorer
        LazyModule("span scorer", hidden_width=hidden_width, max_width=max_width, use_interior=use_interior,
                   dropout=dropout),
        convert_inputs=_convert_inputs,
        convert_outputs=tensor_outputs,
        mixed_precision=mixed_precision,
        # autocast is CUDA's only (a no-op on CPU tensors), and thinc's scaler refuses CPU tensors: scale only
        # where the Ops are a GPU's, so a mixed-precision pipeline still trains and loads on a CPU (CUDA or not)
        grad_scaler=PyTorchGradScaler(enabled=mixed_precision and get_current_ops().device_type == "gpu"),
        serialize_model=serialize_scorer,
        deserialize_model=deserialize_scorer,
    )
    return Model(
        SCORER_NAME,
        _scorer_forward,
        init=_scorer_init,
        layers=[wrapper],
        dims={"nI": None, "nO": None},
        attrs={"hidden_width": hidden_width, "max_width": max_width, "use_interior": use_interior,
               "dropout": dropout},
    )


def get_torch_scorer(model: Model) -> SpanScorer:
    """The torch `SpanScorer` of a span model (or of its scorer layer), once initialised or loaded."""
    module = torch_module(_scorer_layer(model).layers[0]).inner
    if module is None:
        raise ValueError("The span scorer is not built yet: initialise the component (nlp.initialize) first")
    return module


def scorer_shims(model: Model) -> List[Shim]:
    """The shims holding the scorer's weights (for a learning-rate factor of the fresh head)."""
    return [shim for node in _scorer_layer(model).walk() for shim in node.shims]


def fit_max_width(model: Model, suggester_max_width: Optional[int], component: str) -> None:
    """Size the width embedding by the suggester's longest span, or check that the configured size covers it."""
    layer = _scorer_layer(model)
    configured = layer.attrs["max_width"]
    if configured is None:
        if suggester_max_width is None:
            raise ValueError(f"[{component}] the suggester does not declare its longest span: set "
                             f"[components.{component}.model] max_width")
        layer.attrs["max_width"] = int(suggester_max_width)
    elif suggester_max_width is not None and configured < suggester_max_width:
        raise ValueError(f"[{component}] model max_width={configured} is smaller than the suggester's "
                         f"max_width={suggester_max_width}: drop [components.{component}.model] max_width (it then "
                         f"follows the suggester) or raise it")


def _scorer_layer(model: Model) -> Model:
    return model if model.name == SCORER_NAME else model.get_ref("scorer")


def _scorer_forward(model: Model, X: Tuple[List[Floats2d], Ragged], is_train: bool) -> Tuple[Floats2d, Callable]:
    return model.layers[0](X, is_train)


def _scorer_init(model: Model, X: Any = None, Y: Any = None) -> None:
    if X is not None and len(X[0]):
        model.set_dim("nI", int(X[0][0].shape[1]))
    if Y is not None:
        model.set_dim("nO", int(Y.shape[1]))
    if not model.has_dim("nI") or not model.has_dim("nO"):
        raise ValueError("The span scorer needs example docs and labels to initialise: call nlp.initialize(get_examples)")
    slot = torch_module(model.layers[0])
    if slot.inner is not None:
        return
    attrs = model.attrs
    if attrs["max_width"] is None:
        raise ValueError("The span scorer's max_width is unset: initialise it through its component (nlp.initialize)")
    # the device of the current Ops (a GPU under CupyOps): a new module's parameters are on the CPU
    device = get_torch_default_device()
    slot.build(SpanScorer(model.get_dim("nI"), model.get_dim("nO"), attrs["hidden_width"], attrs["max_width"],
                          attrs["use_interior"], attrs["dropout"]).to(device))


def _convert_inputs(model: Model, X: Tuple[List[Floats2d], Ragged], is_train: bool) -> Tuple[ArgsKwargs, Callable]:
    """Flatten the docs' token vectors and turn each doc's (start, end) rows into flat token indices."""
    vectors, spans = X
    ops = model.ops
    # (start, end) rows are per doc: shift them by each doc's first row in the flat token matrix, on the device
    rows = xp2torch(ops.as_contig(ops.asarray2i(spans.dataXd.reshape((-1, 2)))), device=model.shims[0].device).long()
    tokens_t, offsets, backprop_tokens = flat_tokens(model, vectors, spans.lengths, rows.shape[0], is_train)

    def backprop(d_inputs: ArgsKwargs) -> Tuple[List[Floats2d], Ragged]:
        return backprop_tokens(d_inputs.args[0]), spans

    return ArgsKwargs(args=(tokens_t, rows[:, 0] + offsets, rows[:, 1] + offsets), kwargs={}), backprop


def serialize_scorer(slot: LazyModule) -> bytes:
    """safetensors bytes with the rebuild information in the header metadata (no pickles); before init, an empty
    file whose metadata says so (`n_in` None), which loading leaves unbuilt."""
    from safetensors.torch import save

    scorer = slot.inner
    if scorer is None:
        return save({}, metadata={"n_in": "None"})
    state = cpu_state(scorer)
    meta = {key: str(int(getattr(scorer, key))) for key in _REBUILD_KEYS}
    return save(state, metadata=meta)


def deserialize_scorer(slot: LazyModule, data: bytes, device: Any) -> LazyModule:
    """Rebuild the scorer from the safetensors metadata, check it against the config, then load its weights."""
    from safetensors.torch import load

    meta = safetensors_metadata(data)
    if meta.get("n_in", "None") == "None":
        return slot
    n_in, n_out, hidden_width, max_width, use_interior = (int(meta[key]) for key in _REBUILD_KEYS)
    configured = slot.settings
    saved = (hidden_width, max_width, bool(use_interior))
    configured_width = max_width if configured["max_width"] is None else configured["max_width"]
    wanted = (configured["hidden_width"], configured_width, bool(configured["use_interior"]))
    if saved != wanted:
        raise ValueError(
            f"Saved span scorer has (hidden_width, max_width, use_interior) = {saved}, but the config says "
            f"{wanted}: use the saved pipeline's config"
        )
    module = SpanScorer(n_in, n_out, hidden_width, max_width, bool(use_interior), configured["dropout"])
    module.load_state_dict(load(data))
    slot.build(module.to(device))
    return slot

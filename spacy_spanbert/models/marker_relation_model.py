"""`spacy-spanbert.MarkerRelationModel.v1`: relations from typed entity markers read by an encoder of its own.

    (docs, pairs) -> marker encoder (text + levitated typed markers, `nn.relation_markers`) -> [h(<S>); h(<O>)]
                  -> dropout + Linear -> logits

The alternative to `RelationModel.v1`, which reads the shared transformer's token vectors: as in PURE (Zhong and
Chen, NAACL 2021), the relation model has its own encoder (initialised from the same checkpoint) and sees each
candidate pair marked in its text, with the arguments' entity types in the markers. Pairs come in the same Ragged
rows (head start, head end, tail start, tail end, head type, tail type) per doc. Each pair is read in a window of its
doc (`marker_inputs`); a window is encoded once per group of at most `max_pairs` of its pairs, and windows are
batched in length-sorted calls. The encoder is saved like a SpanBERT transformer's (config, tokenizer files,
safetensors), the marker table and the classifier as safetensors.
"""
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy
import srsly
import torch
from spacy.tokens import Doc
from thinc.api import ArgsKwargs, Model, chain, get_current_ops, get_torch_default_device, torch2xp, xp2torch
from thinc.types import Floats2d, Ragged

from ..nn.relation_markers import PairMarkerEncoder, PairMarkerHead
from .marker_inputs import MarkedSequence, marked_sequences, padded_batch
from .hf_encoder import CALL_TOKENS, CALL_TOKENS_GPU, HFEncoder, length_buckets, serialize_encoder
from .hf_encoder import deserialize_encoder, spanbert_tokenizer_config
from .torch_bridge import cpu_state, safetensors_metadata, tensor_outputs
from .torch_shim import LazyModule, torch_layer, torch_module
from .transformer import resolve_cpu_bf16

ARCHITECTURE = "spacy-spanbert.MarkerRelationModel.v1"
InT = Tuple[List[Doc], Ragged]


def build_marker_relation_model(
    name: str,
    tokenizer_config: Optional[Dict[str, Any]] = None,
    transformer_config: Optional[Dict[str, Any]] = None,
    case_types: bool = False,
    cpu_bf16: Union[bool, str] = False,
    dropout: float = 0.1,
    window: int = 128,
    max_pairs: int = 16,
) -> Model[InT, Floats2d]:
    """Score ordered pairs of entity spans from typed markers, with an encoder of the component's own.

    name (str): Hugging Face id or local encoder directory of a BERT-family encoder (its own copy; usually the
        checkpoint the shared transformer starts from).
    tokenizer_config (Dict[str, Any]): Tokenizer settings (as `SpanBERT.v4`'s).
    transformer_config (Dict[str, Any]): Settings passed to the encoder's config.
    case_types (bool): Capitalisation as token types, as `SpanBERT.v4`'s (for uncased encoders).
    cpu_bf16 (Union[bool, str]): bfloat16 autocast on a CPU; "auto": where the CPU runs it natively.
    dropout (float): Dropout on the pair representation before the classifier, in training only.
    window (int): Tokens of text a pair is read in: the whole doc up to this length, else a window holding both
        arguments (`marker_inputs.pair_window`).
    max_pairs (int): Candidate pairs marked in one encoded copy of a window (4 marker tokens each); a window with
        more pairs is encoded again for the rest.
    RETURNS (Model[Tuple[List[Doc], Ragged], Floats2d]): One logit per label (plus "no relation" when softmax).
    """
    if max_pairs < 1 or window < 1:
        raise ValueError(f"{ARCHITECTURE} max_pairs and window must be at least 1, got {max_pairs} and {window}")
    device_type = getattr(get_current_ops(), "device_type", "cpu")
    hf = HFEncoder(str(name), spanbert_tokenizer_config(str(name), dict(tokenizer_config or {})),
                   dict(transformer_config or {}), None, resolve_cpu_bf16(cpu_bf16, None, device_type), bool(case_types))
    encoder_layer = torch_layer(PairMarkerEncoder(hf), convert_inputs=_encoder_inputs,
                                convert_outputs=tensor_outputs, serialize_model=_serialize_encoder,
                                deserialize_model=_deserialize_encoder)
    encoder = Model("spanbert_marker_encoder", _encoder_forward, init=_encoder_init, layers=[encoder_layer],
                    dims={"nO": None}, attrs={"n_types": None, "window": int(window), "max_pairs": int(max_pairs)})
    head_layer = torch_layer(LazyModule("relation classifier", dropout=dropout), convert_inputs=_head_inputs,
                             convert_outputs=tensor_outputs, serialize_model=_serialize_head,
                             deserialize_model=_deserialize_head)
    head = Model("spanbert_marker_head", _head_forward, init=_head_init,
                 layers=[head_layer], dims={"nI": None, "nO": None}, attrs={"dropout": dropout})
    model: Model[InT, Floats2d] = chain(encoder, head)
    model.set_ref("encoder", encoder)
    model.set_ref("scorer", head)
    return model


# --- the encoder ------------------------------------------------------------------------------------------------
def _encoder_init(model: Model, X: Optional[InT] = None, Y: Any = None) -> None:
    """Load the checkpoint (unless loaded from disk), check it can take levitated markers, build the marker table."""
    module: PairMarkerEncoder = torch_module(model.layers[0])
    if module.hf.transformer is None:
        module.hf.load_pretrained()
        module.hf.to(get_torch_default_device())
    config = module.hf.transformer.config
    if config.model_type != "bert" or getattr(config, "position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{ARCHITECTURE} needs a BERT-family encoder (absolute position ids that the markers share), "
                         f"but {module.hf.name} is a {config.model_type!r} model: use it with "
                         f"spacy-spanbert.RelationModel.v1 instead")
    if module.markers is None:
        if model.attrs["n_types"] is None:
            raise ValueError("The marker relation model needs the entity types to initialise: call "
                             "nlp.initialize(get_examples)")
        module.build_markers(model.attrs["n_types"])
    model.set_dim("nO", 2 * module.hf.hidden_size)


def _encoder_forward(model: Model, X: InT, is_train: bool) -> Tuple[Floats2d, Callable]:
    docs, pairs = X
    module: PairMarkerEncoder = torch_module(model.layers[0])
    if module.hf.transformer is None or module.markers is None:
        raise ValueError("The marker relation model has no weights yet: call nlp.initialize() (or load a trained "
                         "pipeline) before using it")
    ops = model.ops
    rows = ops.to_numpy(pairs.dataXd).reshape((-1, 6)).astype("int64")
    n_pairs = rows.shape[0]
    if n_pairs == 0:
        return ops.alloc2f(0, model.get_dim("nO")), lambda dY: X
    sequences = marked_sequences(docs, rows, ops.to_numpy(pairs.lengths), module.hf.tokenizer,
                                 module.hf.case_type_offset, int(module.n_types), model.attrs["window"],
                                 model.attrs["max_pairs"])
    budget = CALL_TOKENS if model.layers[0].shims[0].device.type == "cpu" else CALL_TOKENS_GPU
    calls = [[sequences[i] for i in group] for group in length_buckets([len(s.ids) for s in sequences], budget)]
    outputs, backprops = [], []
    for call in calls:
        output, backprop_call = model.layers[0](call, is_train)
        outputs.append(output)
        backprops.append(backprop_call)
    order = ops.xp.asarray(numpy.asarray([p for call in calls for s in call for p in s.pairs], dtype="int64"))
    result = ops.alloc2f(n_pairs, model.get_dim("nO"))
    result[order] = ops.xp.concatenate(outputs)

    def backprop(dY: Floats2d) -> InT:
        grads, start = dY[order], 0
        for output, backprop_call in zip(outputs, backprops):
            backprop_call(grads[start : start + output.shape[0]])
            start += output.shape[0]
        return X

    return result, backprop


def _encoder_inputs(layer: Model, sequences: List[MarkedSequence], is_train: bool) -> Tuple[ArgsKwargs, Callable]:
    device = layer.shims[0].device
    kwargs = {key: torch.as_tensor(array, device=device) for key, array in padded_batch(sequences).items()}
    return ArgsKwargs(args=(), kwargs=kwargs), lambda d_inputs: sequences


def _serialize_encoder(module: PairMarkerEncoder) -> bytes:
    from safetensors.torch import save

    markers = None if module.markers is None else save({"weight": module.markers.weight.detach().cpu().contiguous()})
    return srsly.msgpack_dumps({"encoder": serialize_encoder(module.hf), "markers": markers,
                                "n_types": module.n_types})


def _deserialize_encoder(module: PairMarkerEncoder, data: bytes, device: Any) -> PairMarkerEncoder:
    from safetensors.torch import load

    msg = srsly.msgpack_loads(data)
    deserialize_encoder(module.hf, msg["encoder"], device)
    if msg.get("markers") is not None:
        module.build_markers(int(msg["n_types"]), load(msg["markers"])["weight"])
    return module.to(device)


# --- the classifier ---------------------------------------------------------------------------------------------
def _head_forward(model: Model, X: Floats2d, is_train: bool) -> Tuple[Floats2d, Callable]:
    return model.layers[0](X, is_train)


def _head_init(model: Model, X: Optional[Floats2d] = None, Y: Optional[Floats2d] = None) -> None:
    if X is not None:
        model.set_dim("nI", int(X.shape[1]))
    if Y is not None:
        model.set_dim("nO", int(Y.shape[1]))
    if not model.has_dim("nI") or not model.has_dim("nO"):
        raise ValueError("The relation classifier needs example pairs and labels to initialise: call "
                         "nlp.initialize(get_examples)")
    slot = torch_module(model.layers[0])
    if slot.inner is None:
        slot.build(PairMarkerHead(model.get_dim("nI"), model.get_dim("nO"), model.attrs["dropout"])
                   .to(get_torch_default_device()))


def _head_inputs(layer: Model, X: Floats2d, is_train: bool) -> Tuple[ArgsKwargs, Callable]:
    pairs = xp2torch(layer.ops.asarray2f(X), requires_grad=is_train, device=layer.shims[0].device)

    def backprop(d_inputs: ArgsKwargs) -> Floats2d:
        return layer.ops.asarray2f(torch2xp(d_inputs.args[0], ops=layer.ops))

    return ArgsKwargs(args=(pairs,), kwargs={}), backprop


def _serialize_head(slot: LazyModule) -> bytes:
    from safetensors.torch import save

    head = slot.inner
    if head is None:
        return save({}, metadata={"n_in": "None"})
    return save(cpu_state(head), metadata={"n_in": str(head.n_in), "n_out": str(head.n_out)})


def _deserialize_head(slot: LazyModule, data: bytes, device: Any) -> LazyModule:
    from safetensors.torch import load

    meta = safetensors_metadata(data)
    if meta.get("n_in", "None") == "None":
        return slot
    head = PairMarkerHead(int(meta["n_in"]), int(meta["n_out"]), slot.settings["dropout"])
    head.load_state_dict(load(data))
    slot.build(head.to(device))
    return slot

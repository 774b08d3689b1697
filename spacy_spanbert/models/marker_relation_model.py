"""`spacy-spanbert.MarkerRelationModel.v1`: relations from typed entity markers read by an encoder of its own.

    (docs, pairs) -> marker encoder (text + levitated typed markers, `nn.relation_markers`) -> [h(<S>); h(<O>)]
                  -> dropout + Linear -> logits

The alternative to `RelationModel.v1`, which reads the shared transformer's token vectors: as in PURE (Zhong and
Chen, NAACL 2021), the relation model has its own encoder (initialised from the same checkpoint) and sees each
candidate pair marked in its text, with the arguments' entity types in the markers. Pairs come in the same Ragged
rows (head start, head end, tail start, tail end, head type, tail type) per doc. A pair's text segment is its
sentence (the whole doc when the two arguments are in different sentences or the doc has no sentence boundaries);
each segment is encoded once per group of at most `max_pairs` pairs, and segments are batched in length-sorted
calls. The encoder is saved like a SpanBERT transformer's (config, tokenizer files, safetensors), the marker table
and the classifier as safetensors.
"""
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy
import srsly
import torch
from spacy.tokens import Doc
from thinc.api import ArgsKwargs, Model, chain, get_current_ops, get_torch_default_device, torch2xp, xp2torch
from thinc.types import Floats2d, Ragged

from ..nn.relation_markers import PairMarkerEncoder, PairMarkerHead, marker_id
from ..relations import sentence_ids
from .case_types import case_type_ids
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
    max_pairs (int): Candidate pairs marked in one encoded copy of a segment (4 marker tokens each); a segment with
        more pairs is encoded again for the rest.
    RETURNS (Model[Tuple[List[Doc], Ragged], Floats2d]): One logit per label (plus "no relation" when softmax).
    """
    if max_pairs < 1:
        raise ValueError(f"{ARCHITECTURE} max_pairs must be at least 1, got {max_pairs}")
    device_type = getattr(get_current_ops(), "device_type", "cpu")
    hf = HFEncoder(str(name), spanbert_tokenizer_config(str(name), dict(tokenizer_config or {})),
                   dict(transformer_config or {}), None, resolve_cpu_bf16(cpu_bf16, None, device_type), bool(case_types))
    encoder_layer = torch_layer(PairMarkerEncoder(hf), convert_inputs=_encoder_inputs,
                                convert_outputs=tensor_outputs, serialize_model=_serialize_encoder,
                                deserialize_model=_deserialize_encoder)
    encoder = Model("spanbert_marker_encoder", _encoder_forward, init=_encoder_init, layers=[encoder_layer],
                    dims={"nO": None}, attrs={"n_types": None, "max_pairs": int(max_pairs)})
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
@dataclass
class MarkedSequence:
    """One encoded copy of a segment: its wordpieces followed by the markers of some pairs (`pairs`: their rows in
    the batch's Ragged). Per slot: wordpiece id, marker table row (-1 for text), position id, token type."""

    ids: numpy.ndarray
    marker_ids: numpy.ndarray
    positions: numpy.ndarray
    types: numpy.ndarray
    n_text: int
    pairs: List[int]


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
    sequences = marked_sequences(docs, rows, ops.to_numpy(pairs.lengths), module, model.attrs["max_pairs"])
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


def marked_sequences(docs: List[Doc], rows: numpy.ndarray, lengths: numpy.ndarray, module: PairMarkerEncoder,
                     max_pairs: int) -> List[MarkedSequence]:
    """Every pair's segment, encoded once per group of at most `max_pairs` of its pairs, with their markers."""
    tokenizer, n_types = module.hf.tokenizer, int(module.n_types)
    sequences, start = [], 0
    for doc, n in zip(docs, lengths):
        sentence = sentence_ids(doc)
        segments: Dict[Tuple[int, int], List[int]] = {}
        for k in range(start, start + int(n)):
            hs, ts = int(rows[k, 0]), int(rows[k, 2])
            if sentence is not None and sentence[hs] == sentence[ts]:
                sent = doc[hs].sent
                key = (sent.start, sent.end)
            else:
                key = (0, len(doc))
            segments.setdefault(key, []).append(k)
        start += int(n)
        for (seg_start, seg_end), members in segments.items():
            ids, types, first, last = _encode_segment(doc, seg_start, seg_end, tokenizer, module.hf.case_type_offset)
            for i in range(0, len(members), max_pairs):
                sequences.append(_with_markers(ids, types, first, last, rows, members[i : i + max_pairs], seg_start,
                                               n_types))
    return sequences


def _encode_segment(doc: Doc, start: int, end: int, tokenizer: Any,
                    case_offset: Optional[int]) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """The segment's wordpieces (with the tokenizer's special tokens, cut at its length limit), their token types,
    and for each spaCy token of the segment its first and last wordpiece (a token without wordpieces, e.g. cut
    off or whitespace, gets the next wordpiece, or the last one of the text)."""
    span = doc[start:end]
    text = span.text
    encoding = tokenizer(text, return_offsets_mapping=True, truncation=True,
                         max_length=int(tokenizer.model_max_length))
    ids = numpy.asarray(encoding["input_ids"], dtype="int64")
    offsets = numpy.asarray(encoding["offset_mapping"], dtype="int64").reshape((-1, 2))
    types = (numpy.zeros(len(ids), dtype="int64") if case_offset is None
             else case_type_ids([text], offsets[None], case_offset)[0])
    real = offsets[:, 1] > offsets[:, 0]
    piece_starts = numpy.where(real, offsets[:, 0], -1)
    last_real = int(numpy.flatnonzero(real)[-1]) if real.any() else 0
    base = span.start_char
    first, last = numpy.zeros(len(span), dtype="int64"), numpy.zeros(len(span), dtype="int64")
    for i, token in enumerate(span):
        lo, hi = token.idx - base, token.idx - base + len(token.text)
        inside = numpy.flatnonzero(real & (offsets[:, 0] < hi) & (offsets[:, 1] > lo))
        if inside.size:
            first[i], last[i] = inside[0], inside[-1]
        else:
            later = numpy.flatnonzero(piece_starts >= lo)
            first[i] = last[i] = later[0] if later.size else last_real
    return ids, types, first, last


def _with_markers(ids: numpy.ndarray, types: numpy.ndarray, first: numpy.ndarray, last: numpy.ndarray,
                  rows: numpy.ndarray, pairs: List[int], seg_start: int, n_types: int) -> MarkedSequence:
    """The segment's slots followed by <S:type> </S:type> <O:type> </O:type> for each pair, at their spans'
    first / last wordpiece positions."""
    n_text = len(ids)
    marker_ids, positions = [], []
    for k in pairs:
        hs, he, ts, te, ht, tt = (int(v) for v in rows[k])
        positions += [first[hs - seg_start], last[he - 1 - seg_start], first[ts - seg_start], last[te - 1 - seg_start]]
        marker_ids += [marker_id(0, ht, n_types), marker_id(1, ht, n_types), marker_id(2, tt, n_types),
                       marker_id(3, tt, n_types)]
    n_markers = len(marker_ids)
    return MarkedSequence(
        ids=numpy.concatenate([ids, numpy.zeros(n_markers, dtype="int64")]),
        marker_ids=numpy.concatenate([numpy.full(n_text, -1, dtype="int64"), numpy.asarray(marker_ids, "int64")]),
        positions=numpy.concatenate([numpy.arange(n_text, dtype="int64"), numpy.asarray(positions, "int64")]),
        types=numpy.concatenate([types, numpy.zeros(n_markers, dtype="int64")]),
        n_text=n_text, pairs=list(pairs))


def _encoder_inputs(layer: Model, sequences: List[MarkedSequence], is_train: bool) -> Tuple[ArgsKwargs, Callable]:
    """Pad a call's sequences; text slots attend to the text, a pair's markers to the text and to each other."""
    width = max(len(s.ids) for s in sequences)
    n = len(sequences)
    ids, marker_ids = numpy.zeros((n, width), "int64"), numpy.full((n, width), -1, "int64")
    positions, types = numpy.zeros((n, width), "int64"), numpy.zeros((n, width), "int64")
    mask = numpy.zeros((n, width, width), "int64")
    pair_rows, pair_columns = [], []
    for r, s in enumerate(sequences):
        length = len(s.ids)
        ids[r, :length], marker_ids[r, :length] = s.ids, s.marker_ids
        positions[r, :length], types[r, :length] = s.positions, s.types
        mask[r, :, : s.n_text] = 1  # every slot, padding included (it needs something to attend to), sees the text
        for p in range(len(s.pairs)):
            block = slice(s.n_text + 4 * p, s.n_text + 4 * p + 4)
            mask[r, block, block] = 1
            pair_rows.append(r)
            pair_columns.append((s.n_text + 4 * p, s.n_text + 4 * p + 2))
    device = layer.shims[0].device
    as_tensor = lambda array: torch.as_tensor(array, device=device)  # noqa: E731
    kwargs = {"input_ids": as_tensor(ids), "marker_ids": as_tensor(marker_ids), "position_ids": as_tensor(positions),
              "attention_mask": as_tensor(mask), "pair_rows": as_tensor(numpy.asarray(pair_rows, "int64")),
              "pair_columns": as_tensor(numpy.asarray(pair_columns, "int64").reshape((-1, 2)))}
    if torch_module(layer).hf.case_type_offset is not None:
        kwargs["token_type_ids"] = as_tensor(types)
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

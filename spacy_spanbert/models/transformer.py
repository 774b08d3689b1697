"""`spacy-spanbert.SpanBERT.v4`: a Hugging Face encoder as one thinc model with spacy-transformers' output.

    docs -> get_spans -> windows -> tokenizer (+ case type ids) -> [torch layer: HFEncoder] -> FullTransformerBatch

The model is our own `Model("spanbert_transformer", forward, init, layers=[torch layer])`: it splits docs into
windows, tokenizes them with character offsets, computes each wordpiece's case type from those offsets (`case_types`),
aligns wordpieces to tokens and runs the encoder (`hf_encoder.HFEncoder`) in length-sorted groups, in bf16 or int8
where configured. Its output is spacy-transformers' `FullTransformerBatch`, so `TransformerListener`,
`Tok2VecTransformer`-style pooling, `doc._.trf_data` and `nlp.replace_listeners` work as with `TransformerModel`.
The listener contract is kept through the attrs spaCy reads (`replace_listener`, `replace_listener_cfg`).
"""
import warnings
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

import numpy
from spacy.tokens import Doc, Span
from spacy_transformers.align import get_alignment, get_alignment_via_offset_mapping
from spacy_transformers.data_classes import FullTransformerBatch, WordpieceBatch
from spacy_transformers.layers import split_trf_batch
from spacy_transformers.layers.transformer_model import huggingface_tokenize
from spacy_transformers.truncate import truncate_oversize_splits
from thinc.api import (
    ArgsKwargs,
    Model,
    PyTorchGradScaler,
    chain,
    get_current_ops,
    get_torch_default_device,
    xp2torch,
)

from .. import fork_safety
from .case_types import case_type_ids
from .hf_encoder import (
    CALL_TOKENS,
    CALL_TOKENS_GPU,
    HFEncoder,
    call_groups,
    deserialize_encoder,
    serialize_encoder,
    spanbert_tokenizer_config,
)
from .listeners import replace_listener_cfg
from .torch_shim import torch_layer, torch_module

DEFAULT_SPANBERT = "SpanBERT/spanbert-base-cased"
ARCHITECTURE = "spacy-spanbert.SpanBERT.v4"
LAYER_NAME = "spanbert_transformer"

__all__ = ["ARCHITECTURE", "CALL_TOKENS", "CALL_TOKENS_GPU", "create_spanbert_transformer", "encoder_of",
           "is_spanbert_transformer", "spanbert_tokenizer_config"]


def create_spanbert_transformer(
    name: str = DEFAULT_SPANBERT,
    get_spans: Optional[Callable[[List[Doc]], List[List[Span]]]] = None,
    tokenizer_config: Optional[Dict[str, Any]] = None,
    transformer_config: Optional[Dict[str, Any]] = None,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[Dict[str, Any]] = None,
    quantize: Optional[str] = None,
    cpu_bf16: Union[bool, str] = False,
    case_types: bool = False,
) -> Model[List[Doc], FullTransformerBatch]:
    """A transformer for spaCy's `transformer` component (or inside a span component), with SpanBERT defaults.

    name (str): Hugging Face id or local encoder directory (e.g. our pretraining's `OUTPUT_DIR/encoder/`).
    get_spans (Callable): Splits docs into windows, e.g. `spacy-transformers.strided_spans.v1` (the strided windows
        cover every token of a long document).
    tokenizer_config (Dict[str, Any]): Tokenizer settings; missing `do_lower_case`/`model_max_length` are filled in
        (the SpanBERT hub checkpoints ship no tokenizer_config.json).
    transformer_config (Dict[str, Any]): Settings passed to the transformer's config.
    mixed_precision (bool): Autocast on a GPU, with a gradient scaler (no effect on a CPU; see `cpu_bf16`).
    grad_scaler_config (Dict[str, Any]): Settings of the gradient scaler (`enabled` defaults to mixed_precision on
        a GPU).
    quantize (Optional[str]): None (fp32), "int8" (a weight scale per output row) or "int8_per_tensor" (one per
        matrix): the encoder's Linear layers become dynamic int8 as soon as the model is built or loaded, and are
        saved as int8. Prediction only, on a CPU. `spacy spanbert-quantize IN OUT` sets it on a trained pipeline.
    cpu_bf16 (Union[bool, str]): On a CPU, run the encoder under bfloat16 autocast (weights and gradients stay
        float32): faster on a CPU with bfloat16 instructions (AVX512-BF16 / AMX), many times slower on one without.
        "auto": on where this CPU has them, decided each time the pipeline is built or loaded, so a pipeline moves
        between machines. Ignored on a GPU. Not with `quantize`.
    case_types (bool): Give each wordpiece a token type for its word's capitalisation (none, title, upper, mixed),
        through three rows appended to the checkpoint's token-type table (`case_types.py`): an uncased encoder (the
        tokenizer lower-cases the text) then sees case in every layer. Needs a fast tokenizer and a token-type table
        (BERT family).
    RETURNS (Model[List[Doc], FullTransformerBatch]): spacy-transformers' transformer output.
    """
    from .quantize import check_cpu, check_scheme

    if get_spans is None:
        raise ValueError(f"{ARCHITECTURE} needs get_spans, e.g. spacy-transformers.strided_spans.v1")
    device_type = getattr(get_current_ops(), "device_type", "cpu")
    check_scheme(quantize)
    check_cpu(quantize, device_type)
    cpu_bf16 = resolve_cpu_bf16(cpu_bf16, quantize, device_type)
    scaler = dict(grad_scaler_config or {})
    # thinc's scaler refuses CPU tensors (autocast is CUDA's only): a mixed-precision config must still train, and
    # load, where the Ops are a CPU's
    scaler.setdefault("enabled", mixed_precision and device_type == "gpu")
    encoder = HFEncoder(str(name), spanbert_tokenizer_config(str(name), dict(tokenizer_config or {})),
                        dict(transformer_config or {}), quantize, cpu_bf16, bool(case_types))
    layer = torch_layer(encoder, convert_inputs=_convert_inputs, convert_outputs=_convert_outputs,
                        serialize_model=serialize_encoder, deserialize_model=deserialize_encoder,
                        mixed_precision=mixed_precision, grad_scaler=PyTorchGradScaler(**scaler))
    return Model(
        LAYER_NAME,
        forward,
        init=init,
        layers=[layer],
        dims={"nO": None},
        attrs={"get_spans": get_spans, "name": str(name), "replace_listener": replace_listener,
               "replace_listener_cfg": replace_listener_cfg, "flush_cache_chance": 0.0},
    )


def resolve_cpu_bf16(cpu_bf16: Union[bool, str], quantize: Optional[str], device_type: str) -> bool:
    """`cpu_bf16` as a boolean: "auto" is on where the CPU runs bfloat16 natively (and the encoder is not int8)."""
    from ..cpu import has_native_bf16

    if cpu_bf16 not in (True, False, "auto"):
        raise ValueError(f"{ARCHITECTURE} cpu_bf16 = {cpu_bf16!r} is not a setting: use true, false or \"auto\"")
    if cpu_bf16 == "auto":
        return quantize is None and has_native_bf16()
    if cpu_bf16 and quantize is not None:
        raise ValueError(f"{ARCHITECTURE} has both quantize = {quantize!r} and cpu_bf16 = true: an int8 encoder does "
                         f"not run in bfloat16; set cpu_bf16 = false")
    if cpu_bf16 and device_type == "cpu":
        warn_if_emulated_bf16("SpanBERT cpu_bf16 = true")
    return bool(cpu_bf16)


def warn_if_emulated_bf16(setting: str) -> None:
    """One warning line when bf16 is asked for explicitly on a CPU that would emulate it."""
    from ..cpu import has_native_bf16, kernel_capability

    if not has_native_bf16():
        warnings.warn(f"{setting} on a CPU without native bfloat16 (kernels {kernel_capability()}, no AVX512-BF16/AMX): "
                      f"it is emulated and many times slower than float32; set it to \"auto\" or false")


def is_spanbert_transformer(model: Model) -> bool:
    """True for a model built by `create_spanbert_transformer`."""
    return model.name == LAYER_NAME


def encoder_of(model: Model) -> HFEncoder:
    """The `HFEncoder` torch module of a SpanBERT transformer."""
    return torch_module(model.layers[0])


def replace_listener(model: Model) -> Model:
    """What a listener becomes when its component takes its own copy of the transformer (`nlp.replace_listeners`)."""
    return chain(model, split_trf_batch())


def init(model: Model, X: Optional[List[Doc]] = None, Y: Any = None) -> None:
    """Load the checkpoint (unless the weights are already there, e.g. loaded from disk) and set the width."""
    encoder = encoder_of(model)
    if encoder.transformer is None:
        encoder.load_pretrained()
        encoder.to(get_torch_default_device())  # the current Ops' device (a GPU under CupyOps); loading is on the CPU
    model.set_dim("nO", encoder.hidden_size)


def forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[FullTransformerBatch, Callable]:
    fork_safety.guard()  # a forked n_process worker: single-threaded torch before its first parallel op
    encoder = encoder_of(model)
    if encoder.transformer is None:
        raise ValueError("The transformer has no weights yet: call nlp.initialize() (or load a trained pipeline) "
                         "before using it")
    if is_train and encoder.quantize is not None:
        raise ValueError("An int8 transformer (quantize set) is for prediction only: train with quantize = null, then "
                         "run `spacy spanbert-quantize` on the trained pipeline")
    tokenizer = encoder.tokenizer
    nested_spans = model.attrs["get_spans"](docs)
    flat_spans = [span for doc_spans in nested_spans for span in doc_spans]
    texts = [span.text for span in flat_spans]
    encoding = huggingface_tokenize(tokenizer, texts)
    wordpieces = WordpieceBatch.from_batch_encoding(encoding)
    if "offset_mapping" in encoding:
        align = get_alignment_via_offset_mapping(flat_spans, encoding["offset_mapping"])
    else:
        align = get_alignment(flat_spans, wordpieces.strings, tokenizer.all_special_tokens)
    offset = encoder.case_type_offset
    if offset is not None:  # the checkpoint has case rows (case_types), and the tokenizer is fast (checked on load)
        types = case_type_ids(texts, numpy.asarray(encoding["offset_mapping"]), offset)
        wordpieces.token_type_ids = model.ops.asarray2i(types)
    wordpieces, align = truncate_oversize_splits(wordpieces, align, tokenizer.model_max_length)
    _warn_if_cut(model, wordpieces, tokenizer.model_max_length)
    model_output, backprop_encoder = model.layers[0](wordpieces, is_train)
    output = FullTransformerBatch(spans=nested_spans, wordpieces=wordpieces, model_output=model_output, align=align)

    def backprop(d_output: FullTransformerBatch) -> List[Doc]:
        backprop_encoder(d_output.model_output)
        return docs

    return output, backprop


def _convert_inputs(layer: Model, wordpieces: WordpieceBatch, is_train: bool) -> Tuple[ArgsKwargs, Callable]:
    encoder = torch_module(layer)
    device = layer.shims[0].device
    kwargs = {"input_ids": xp2torch(wordpieces.input_ids, device=device),
              "attention_mask": xp2torch(wordpieces.attention_mask, device=device)}
    if wordpieces.token_type_ids is not None:
        kwargs["token_type_ids"] = xp2torch(wordpieces.token_type_ids, device=device)
    if len(wordpieces) > 1:
        budget = CALL_TOKENS if device.type == "cpu" else CALL_TOKENS_GPU
        kwargs["groups"] = call_groups(layer.ops.to_numpy(wordpieces.attention_mask), budget, encoder.plain_outputs())
    return ArgsKwargs(args=(), kwargs=kwargs), lambda d_inputs: []


def _convert_outputs(layer: Model, inputs_outputs: Tuple[Any, Any], is_train: bool) -> Tuple[Any, Callable]:
    _, model_output = inputs_outputs

    def backprop(d_model_output: Any) -> ArgsKwargs:  # the gradient of the last hidden state (spacy-transformers')
        return ArgsKwargs(args=(model_output.last_hidden_state,),
                          kwargs={"grad_tensors": next(iter(d_model_output.values()))})

    return model_output, backprop


_CUT_WARNED: Set[int] = set()


def _warn_if_cut(model: Model, wordpieces: WordpieceBatch, limit: Any) -> None:
    """Warn once per model when a window hit the tokenizer's limit: the wordpieces past it are dropped and their tokens
    get zero vectors (long unspaced CJK text or URLs can do this)."""
    if model.id in _CUT_WARNED or not isinstance(limit, int) or max(wordpieces.lengths, default=0) < limit:
        return
    _CUT_WARNED.add(model.id)  # by id, not in model.attrs: attrs are serialized with the pipeline
    warnings.warn(f"A transformer window reached the tokenizer's limit of {limit} wordpieces: any wordpieces past it "
                  f"were dropped and their tokens got no vectors. Use shorter windows (get_spans window and stride).")

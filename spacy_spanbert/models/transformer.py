"""`spacy-spanbert.SpanBERT.v1`: spacy-transformers' TransformerModel with SpanBERT-correct defaults.

The SpanBERT hub checkpoints ship no tokenizer_config.json, so AutoTokenizer would lower-case their cased vocab and
leave `model_max_length` unset; this builder fills both in. It also loads the encoder directories our pretraining
writes (`OUTPUT_DIR/encoder/`), turns "offline and not found" into one error naming the setting to change, and
stores the transformer weights as safetensors instead of pickles when the pipeline is saved.
`spacy-spanbert.SpanBERT.v2` adds `quantize`: an int8 encoder for CPU inference (see `quantize.py`), saved as int8.
`spacy-spanbert.SpanBERT.v3` adds `case_types`: capitalisation as token types for uncased encoders (`case_types.py`).
"""
import json
import os
import warnings
from functools import partial
from io import BytesIO
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set, Union

import srsly
from spacy.tokens import Doc, Span
from spacy_transformers.layers.hf_shim import HFShim
from spacy_transformers.layers.transformer_model import TransformerModel
from spacy_transformers.layers.transformer_model import init as _trf_init

from .. import fork_safety
from ..hf import check_tokenizer_files, looks_cased
from .averaged_params import use_averaged_params
from .checkpoint_names import missing_package_hint
from .listeners import replace_listener_cfg

DEFAULT_SPANBERT = "SpanBERT/spanbert-base-cased"
DEFAULT_MAX_LENGTH = 512


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf8"))
    except (OSError, ValueError):
        return {}


def spanbert_tokenizer_config(name: str, tokenizer_config: Dict[str, Any]) -> Dict[str, Any]:
    """Fill in the tokenizer settings a checkpoint without tokenizer_config.json needs.

    Explicit settings always win; then the checkpoint's own tokenizer_config.json; only then our defaults:
    `do_lower_case=False` for cased names and `model_max_length = min(512, max_position_embeddings)`.
    """
    config = {"use_fast": True, **tokenizer_config}
    local = Path(str(name))
    shipped = _read_json(local / "tokenizer_config.json") if local.is_dir() else {}
    if "do_lower_case" not in config and "do_lower_case" not in shipped and looks_cased(name):
        config["do_lower_case"] = False
    shipped_max = shipped.get("model_max_length")
    if "model_max_length" not in config and not (isinstance(shipped_max, int) and 0 < shipped_max <= 10**6):
        positions = _read_json(local / "config.json").get("max_position_embeddings") if local.is_dir() else None
        config["model_max_length"] = min(DEFAULT_MAX_LENGTH, int(positions)) if positions else DEFAULT_MAX_LENGTH
    return config


def _checked_init(model: TransformerModel, X: Optional[List[Doc]] = None, Y: Any = None) -> None:
    """spacy-transformers' init, with a missing/unreachable checkpoint turned into one clear error."""
    name = model.attrs["name"]
    if not model.attrs["has_transformer"] and not Path(str(name)).is_dir():
        text = str(name)
        if text.startswith((".", "/", "~")) or text.count("/") > 1 or (os.sep != "/" and os.sep in text):
            raise FileNotFoundError(
                f"Transformer checkpoint directory '{name}' does not exist: set [components.*.model.name] "
                f"(or --paths.init_model) to an encoder directory"
            )
    if not model.attrs["has_transformer"]:
        check_tokenizer_files(name, "[components.*.model.name] (or --paths.init_model)")
    try:
        _trf_init(model, X=X, Y=Y)
    except OSError as err:
        raise OSError(
            f"Could not load transformer checkpoint '{name}' (offline, or not a Hugging Face model id/directory): "
            f"set --paths.init_model or [components.*.model.name] to a local encoder directory or a short name "
            f"such as 'all-MiniLM-L6-v2'{missing_package_hint(name)}"
        ) from None
    model.layers[0].shims[0]._quantize_loaded()  # SpanBERT.v2 with quantize: int8 from the start
    if model.attrs.get("case_types"):  # SpanBERT.v3: the checkpoint's token-type table gains the case rows
        from .case_types import add_case_type_rows

        add_case_type_rows(_hf_encoder(model.layers[0]))


def _safetensors_metadata(data: bytes) -> Dict[str, str]:
    """The `__metadata__` of safetensors bytes (8-byte little-endian header length, then the JSON header)."""
    size = int.from_bytes(data[:8], "little")
    try:
        return json.loads(data[8 : 8 + size]).get("__metadata__") or {}
    except ValueError:
        return {}


class SafetensorsHFShim(HFShim):
    """HFShim whose serialised weights are safetensors bytes, so saved pipelines contain no pickles.

    `quantize` (None or a `quantize.SCHEMES` name) is set by SpanBERT.v2: the encoder is then int8 (see `quantize`),
    saved as plain int8 tensors with their scales, and rebuilt quantized on load.
    """

    quantize: Optional[str] = None
    cpu_bf16: bool = False

    def to_bytes(self) -> bytes:
        if self._hfmodel.transformer is None:
            return super().to_bytes()
        from safetensors.torch import save

        from .quantize import METADATA_KEY, quantized_scheme, quantized_state

        model = self._model
        scheme = quantized_scheme(model)
        metadata = {"format": "pt"}
        if scheme is not None:
            state = quantized_state(model)
            metadata[METADATA_KEY] = scheme
        else:
            state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        # HFShim pickles `state_dict()` with torch.save: shadow the method for this one call so it pickles an empty
        # dict instead of a second full copy of the weights, then put the safetensors bytes in its place.
        model.state_dict = dict
        try:
            msg = srsly.msgpack_loads(super().to_bytes())
        finally:
            del model.state_dict
        msg["state"] = save(state, metadata=metadata)
        return srsly.msgpack_dumps(msg)

    def from_bytes(self, bytes_data: bytes) -> "SafetensorsHFShim":
        msg = srsly.msgpack_loads(bytes_data)
        state = msg.get("state", b"")
        if not (state and state[8:10] == b'{"'):  # not safetensors (8-byte header length, then JSON)
            super().from_bytes(bytes_data)
            self._quantize_loaded()
            return self
        import torch
        from safetensors.torch import load

        from .quantize import METADATA_KEY, load_quantized_state, quantize_encoder

        saved = _safetensors_metadata(state).get(METADATA_KEY)
        if saved is not None and saved != self.quantize:
            raise ValueError(
                f"The saved transformer is int8 ({saved!r}) but its config builds "
                f"{'an fp32' if self.quantize is None else repr(self.quantize)} one: set its model's @architectures = "
                f"\"spacy-spanbert.SpanBERT.v2\" (v3 also takes it) and quantize = \"{saved}\" (or re-run "
                f"spanbert-quantize)")
        # Let HFShim rebuild config, tokenizer and an empty model from a weightless message, then load the
        # safetensors weights directly: no pickle is read and no extra copy of the weights is made.
        empty = BytesIO()
        torch.save({}, empty)
        msg["state"] = empty.getvalue()
        del bytes_data
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # HFShim warns that the (empty) state dict did not match strictly
            super().from_bytes(srsly.msgpack_dumps(msg))
        if saved is not None:
            load_quantized_state(quantize_encoder(self._model, saved), load(state))
        else:
            self._model.load_state_dict(load(state), strict=True)
            self._quantize_loaded()
        return self

    def use_params(self, params: Dict[Any, Any]) -> Any:
        """Parameter averages under the optimizer's keys (HFShim's own lookup never finds them: averaged_params)."""
        return use_averaged_params(self, params)

    def _quantize_loaded(self) -> None:
        """fp32 weights under a quantizing config (e.g. `spacy.load(fp32_dir, config=...)`): quantize them now."""
        if self.quantize is not None and self._hfmodel.transformer is not None:
            from .quantize import quantize_encoder, quantized_scheme

            if quantized_scheme(self._model) is None:
                quantize_encoder(self._model, self.quantize)


# Padded wordpieces per encoder call, in training and prediction. On CPU small calls are faster (a 512-piece call's
# activations stay in cache: 1.8x the words/s of whole 32-sentence batches, bench/inference_speed.py), and
# length-sorted calls skip the padding a batch of mixed-length sentences carries; GPUs want large calls.
CALL_TOKENS = 512
CALL_TOKENS_GPU = 8192


def _right_padded_lengths(model: Any, wordpieces: Any) -> Optional[List[int]]:
    """Real length of each window, or None unless every row is [real pieces..., padding] (right padding)."""
    import numpy

    mask = model.ops.to_numpy(wordpieces.attention_mask) > 0
    lengths = mask.sum(axis=1)
    if not (mask == (numpy.arange(mask.shape[1]) < lengths[:, None])).all():
        return None
    return [int(n) for n in lengths]


def _hf_encoder(model: Any) -> Any:
    """The Hugging Face model inside the wrapper layer (None before initialisation)."""
    return getattr(model.shims[0]._hfmodel, "transformer", None)


def _plain_outputs(model: Any) -> bool:
    """True unless the encoder also returns hidden states or attentions, whose shapes the bucketed merge skips."""
    config = getattr(_hf_encoder(model), "config", None)
    return not (getattr(config, "output_hidden_states", False) or getattr(config, "output_attentions", False))


_CUT_WARNED: Set[int] = set()


def _warn_if_cut(model: Any, wordpieces: Any) -> None:
    """Warn once per model when a window hit the tokenizer's limit: spacy-transformers then drops the wordpieces past
    it without a word, and their tokens get zero vectors (long unspaced CJK text or URLs can do this)."""
    limit = getattr(getattr(model.shims[0]._hfmodel, "tokenizer", None), "model_max_length", None)
    if model.id in _CUT_WARNED or not isinstance(limit, int) or max(wordpieces.lengths, default=0) < limit:
        return
    _CUT_WARNED.add(model.id)  # by id, not in model.attrs: attrs are serialized with the pipeline
    warnings.warn(f"A transformer window reached the tokenizer's limit of {limit} wordpieces: any wordpieces past it "
                  f"were dropped and their tokens got no vectors. Use shorter windows (get_spans window and stride).")


def _token_budget(model: Any) -> int:
    return CALL_TOKENS_GPU if _encoder_device_type(model) != "cpu" else CALL_TOKENS


def length_buckets(lengths: List[int], max_tokens: int) -> List[List[int]]:
    """Window indices, longest first, in groups whose padded size (rows x longest row) stays within `max_tokens`.

    A batch of sentences is padded to its longest one; encoding length-sorted groups instead spends the encoder's
    time on real wordpieces (and attention's on short rows), which is where inference time goes."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: List[List[int]] = []
    for i in order:
        if groups and (len(groups[-1]) + 1) * max(1, lengths[groups[-1][0]]) <= max_tokens:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _select(wordpieces: Any, rows: List[int], width: int) -> Any:
    """Rows of a WordpieceBatch, cut to `width` columns (fancy indexing works for numpy and cupy alike)."""
    from spacy_transformers.data_classes import WordpieceBatch

    return WordpieceBatch(
        strings=[wordpieces.strings[i] for i in rows],
        input_ids=wordpieces.input_ids[rows][:, :width],
        attention_mask=wordpieces.attention_mask[rows][:, :width],
        lengths=[wordpieces.lengths[i] for i in rows],
        token_type_ids=None if wordpieces.token_type_ids is None else wordpieces.token_type_ids[rows][:, :width],
    )


def _cat(parts: List[Any]) -> Any:
    """Concatenate per-chunk outputs along the batch axis (tuples element-wise; other values: the first chunk's)."""
    import torch

    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts, dim=0)
    if isinstance(parts[0], tuple):
        return tuple(_cat(list(group)) for group in zip(*parts))
    return parts[0]


def _merge(outputs: List[Any], groups: List[List[int]], n_rows: int, width: int) -> Any:
    """Put length-bucketed outputs back in batch order at the batch's padded width (zeros in the padding)."""
    import torch

    merged = {}
    device = outputs[0]["last_hidden_state"].device
    indexes = [torch.as_tensor(rows, device=device) for rows in groups]
    for key in outputs[0].keys():
        first = outputs[0][key]
        full = first.new_zeros((n_rows, width, *first.shape[2:]) if key == "last_hidden_state" else
                               (n_rows, *first.shape[1:]))
        for index, out in zip(indexes, outputs):
            if key == "last_hidden_state":
                full[index, : out[key].shape[1]] = out[key]
            else:
                full[index] = out[key]
        merged[key] = full
    return type(outputs[0])(**merged)


def _inference_only(d_output: Any) -> Any:
    raise ValueError("Chunked transformer outputs are for inference only (is_train=False)")


class _BucketedEncoder:
    """Stands in for the HF model during one training call: runs it on length-sorted groups of rows (each cut to its
    longest row) and returns their outputs merged back into one padded batch.

    The merge is differentiable, so the shim's single `torch.autograd.backward` reaches every group and spacy-
    transformers' own backprop (gradient scaling and unscaling included) runs once, as for one call."""

    def __init__(self, encoder: Any, groups: List[List[int]], lengths: List[int], width: int) -> None:
        self.encoder, self.groups, self.lengths, self.width = encoder, groups, lengths, width

    def train(self, mode: bool = True) -> "_BucketedEncoder":
        self.encoder.train(mode)
        return self

    def __getattr__(self, name: str) -> Any:  # anything else (parameters, device, config): the real model's
        return getattr(self.encoder, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import torch

        outputs = []
        for rows in self.groups:
            index = torch.as_tensor(rows, device=kwargs["input_ids"].device)
            cut = max(1, self.lengths[rows[0]])
            outputs.append(self.encoder(*args, **{key: value[index, :cut] for key, value in kwargs.items()}))
        return _merge(outputs, self.groups, len(self.lengths), self.width)


def _bucketed_training_forward(forward: Callable, model: Any, wordpieces: Any, groups: List[List[int]],
                               lengths: List[int]) -> Any:
    """`forward` (thinc's PyTorchWrapper forward) with the shim's model swapped for a `_BucketedEncoder` for the
    length of the forward pass; the returned backprop is the shim's own and needs no swap."""
    shim = model.shims[0]
    encoder = shim._model
    try:
        shim._model = _BucketedEncoder(encoder, groups, lengths, int(wordpieces.input_ids.shape[1]))
        return forward(model, wordpieces, True)
    finally:
        shim._model = encoder


def chunked_forward(forward: Callable, model: Any, wordpieces: Any, is_train: bool) -> Any:
    """The transformer's forward: `_chunked`, under bfloat16 autocast when SpanBERT.v2's `cpu_bf16` is set and the
    encoder is on the CPU. Outputs leave as float32 (numpy, which spaCy's side uses, has no bfloat16); the backward
    runs outside autocast, as PyTorch wants.

    A module-level function (bound with functools.partial) so that pipelines pickle, which the `spawn` start
    method of multiprocessing (macOS and Windows) needs."""
    fork_safety.guard()  # a forked n_process worker: single-threaded torch before its first parallel op
    if not (getattr(model.shims[0], "cpu_bf16", False) and _encoder_device_type(model) == "cpu"):
        return _chunked(forward, model, wordpieces, is_train)
    import torch

    with torch.autocast("cpu", dtype=torch.bfloat16):
        output, backprop = _chunked(forward, model, wordpieces, is_train)

    def to_float32(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16:
            return value.float()
        return tuple(to_float32(v) for v in value) if isinstance(value, tuple) else value

    for key, value in list(output.items()):
        output[key] = to_float32(value)  # the same ModelOutput object: spacy-transformers' backprop reads it
    return output, backprop


def cpu_has_bf16() -> bool:
    """True when this CPU runs bfloat16 natively (AVX512-BF16 or AMX), where bf16 autocast pays off (`cpu.py`)."""
    from ..cpu import has_native_bf16

    return has_native_bf16()


def warn_if_emulated_bf16(setting: str) -> None:
    """One warning line when bf16 is asked for explicitly on a CPU that would emulate it."""
    if not cpu_has_bf16():
        from ..cpu import kernel_capability

        warnings.warn(f"{setting} on a CPU without native bfloat16 (kernels {kernel_capability()}, no AVX512-BF16/AMX): "
                      f"it is emulated and many times slower than float32; set it to \"auto\" or false")


def _encoder_device_type(model: Any) -> str:
    return getattr(getattr(_hf_encoder(model), "device", None), "type", "cpu")


def _chunked(forward: Callable, model: Any, wordpieces: Any, is_train: bool) -> Any:
    """Encode length-sorted groups of at most CALL_TOKENS(_GPU) padded wordpieces and put the outputs back in order at
    the batch's padded width. This skips most padding when sentences of mixed length share a batch (training on
    CoNLL batches: see bench/profile_train.py), and when predicting it bounds activation memory by a batch, not a
    document (a 20,000-word document is ~200 windows). Padding positions of the merged output are zeros; nothing
    downstream reads them (alignment uses real pieces). Real wordpieces' vectors are those of one padded call:
    BERT's attention mask keeps padding out of them."""
    import torch

    _warn_if_cut(model, wordpieces)
    if is_train and getattr(model.shims[0], "quantize", None) is not None:
        raise ValueError("An int8 transformer (quantize set) is for prediction only: train with quantize = null "
                         "(SpanBERT.v1), then run `spacy spanbert-quantize` on the trained pipeline")
    if len(wordpieces) <= 1:
        return forward(model, wordpieces, is_train)
    width = int(wordpieces.input_ids.shape[1])
    lengths = _right_padded_lengths(model, wordpieces) if _plain_outputs(model) else None
    groups = length_buckets(lengths, _token_budget(model)) if lengths is not None else []
    if is_train:
        if len(groups) <= 1:
            return forward(model, wordpieces, True)
        return _bucketed_training_forward(forward, model, wordpieces, groups, lengths)
    merged = None
    if lengths is not None:
        outputs = [forward(model, _select(wordpieces, g, max(1, lengths[g[0]])), False)[0] for g in groups]
        if all(isinstance(value, torch.Tensor) for value in outputs[0].values()):
            merged = _merge(outputs, groups, len(wordpieces), width)
    if merged is None:  # left padding or non-tensor outputs (e.g. caches): keep order and width, only split
        step = max(1, _token_budget(model) // max(1, width))
        if len(wordpieces) <= step:
            return forward(model, wordpieces, is_train)
        outputs = [forward(model, wordpieces[i : i + step], False)[0] for i in range(0, len(wordpieces), step)]
        merged = type(outputs[0])(**{key: _cat([out[key] for out in outputs]) for key in outputs[0].keys()})
    return merged, _inference_only


class SpanBERTTransformerModel(TransformerModel):
    """spacy-transformers' TransformerModel whose `copy()` keeps what our builders set: the checked init, the
    forward (SpanBERT.v3's case types) and every attr. spaCy's `replace_listeners` (a sourced component taking its
    own copy of a shared transformer) copies the model, and spacy-transformers' copy rebuilds a stock one."""

    def copy(self) -> "SpanBERTTransformerModel":
        copied = super().copy()
        copied.__class__ = type(self)
        copied.init, copied._func = self.init, self._func
        copied.attrs.update(self.attrs)
        return copied


def create_spanbert_transformer(
    name: str = DEFAULT_SPANBERT,
    get_spans: Optional[Callable[[List[Doc]], List[List[Span]]]] = None,
    tokenizer_config: Optional[Dict[str, Any]] = None,
    transformer_config: Optional[Dict[str, Any]] = None,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[Dict[str, Any]] = None,
) -> TransformerModel:
    """A transformer for spaCy's `transformer` component (or inside a span component) with SpanBERT defaults.

    name (str): Hugging Face id or local encoder directory (e.g. our pretraining's `OUTPUT_DIR/encoder/`).
    get_spans (Callable): Splits docs into windows, e.g. `spacy-transformers.strided_spans.v1` (required for
        long documents: the strided windows cover every token).
    tokenizer_config (Dict[str, Any]): Tokenizer settings; missing `do_lower_case`/`model_max_length` are filled in.
    transformer_config (Dict[str, Any]): Settings passed to the transformer's config.
    RETURNS (TransformerModel): Outputs a spacy-transformers `FullTransformerBatch`.
    """
    return create_spanbert_transformer_v2(name, get_spans, tokenizer_config, transformer_config, mixed_precision,
                                          grad_scaler_config, quantize=None, cpu_bf16=False)


def create_spanbert_transformer_v2(
    name: str = DEFAULT_SPANBERT,
    get_spans: Optional[Callable[[List[Doc]], List[List[Span]]]] = None,
    tokenizer_config: Optional[Dict[str, Any]] = None,
    transformer_config: Optional[Dict[str, Any]] = None,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[Dict[str, Any]] = None,
    quantize: Optional[str] = None,
    cpu_bf16: Union[bool, str] = False,
) -> TransformerModel:
    """`spacy-spanbert.SpanBERT.v2`: SpanBERT.v1 plus `quantize`, for int8 CPU inference, and `cpu_bf16`.

    quantize (Optional[str]): None (fp32, as v1), "int8" (a weight scale per output row) or "int8_per_tensor" (one
        per matrix): the encoder's Linear layers become dynamic int8 as soon as the model is built or loaded, and
        are saved as int8. Prediction only, on a CPU. `spacy spanbert-quantize IN OUT` sets it on a trained pipeline.
    cpu_bf16 (Union[bool, str]): on a CPU, run the encoder under bfloat16 autocast (weights and gradients stay
        float32): faster on a CPU with bfloat16 instructions (AVX512-BF16 / AMX), slower on one without
        (`bench/profile_train.py --cpu-bf16` measures it). "auto": on where this CPU has them, decided each time the
        pipeline is built or loaded, so a pipeline moves between machines. Ignored on a GPU, where
        `mixed_precision` applies. Not with `quantize` ("auto" then means off).
    Other arguments: see SpanBERT.v1 (`create_spanbert_transformer`).
    """
    from thinc.api import get_current_ops

    from .quantize import check_cpu, check_scheme

    if get_spans is None:
        raise ValueError("create_spanbert_transformer needs get_spans, e.g. spacy-transformers.strided_spans.v1")
    check_scheme(quantize)
    check_cpu(quantize, getattr(get_current_ops(), "device_type", "cpu"))
    if cpu_bf16 not in (True, False, "auto"):
        raise ValueError(f"SpanBERT.v2 cpu_bf16 = {cpu_bf16!r} is not a setting: use true, false or \"auto\"")
    if cpu_bf16 == "auto":
        cpu_bf16 = quantize is None and cpu_has_bf16()
    elif cpu_bf16 and getattr(get_current_ops(), "device_type", "cpu") == "cpu":
        warn_if_emulated_bf16("SpanBERT cpu_bf16 = true")
    if quantize is not None and cpu_bf16:
        raise ValueError(f"SpanBERT.v2 has both quantize = {quantize!r} and cpu_bf16 = true: an int8 encoder does not "
                         f"run in bfloat16; set cpu_bf16 = false")
    scaler = dict(grad_scaler_config or {})
    # spacy-transformers enables the scaler with mixed_precision, and thinc's scaler refuses CPU tensors (autocast
    # is CUDA's only): a mixed-precision config must still train, and load, where the Ops are a CPU's
    scaler.setdefault("enabled", mixed_precision and getattr(get_current_ops(), "device_type", "cpu") == "gpu")
    model = SpanBERTTransformerModel(
        str(name),
        get_spans,
        spanbert_tokenizer_config(str(name), dict(tokenizer_config or {})),
        dict(transformer_config or {}),
        mixed_precision,
        scaler,
    )
    model.init = _checked_init
    model.attrs["replace_listener_cfg"] = replace_listener_cfg
    shim = model.layers[0].shims[0]
    shim.__class__ = SafetensorsHFShim
    shim.quantize = quantize
    shim.cpu_bf16 = bool(cpu_bf16)
    model.layers[0]._func = partial(chunked_forward, model.layers[0]._func)
    return model


def create_spanbert_transformer_v3(
    name: str = DEFAULT_SPANBERT,
    get_spans: Optional[Callable[[List[Doc]], List[List[Span]]]] = None,
    tokenizer_config: Optional[Dict[str, Any]] = None,
    transformer_config: Optional[Dict[str, Any]] = None,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[Dict[str, Any]] = None,
    quantize: Optional[str] = None,
    cpu_bf16: Union[bool, str] = False,
    case_types: bool = False,
) -> TransformerModel:
    """`spacy-spanbert.SpanBERT.v3`: SpanBERT.v2 plus `case_types`.

    case_types (bool): give each wordpiece a token type for its word's capitalisation (none, title, upper, mixed),
        through three rows appended to the checkpoint's token-type table (`case_types.py`). For uncased encoders,
        whose tokenizer lower-cases the text; needs a fast tokenizer and a token-type table (BERT-family).
    Other arguments: see SpanBERT.v2 (`create_spanbert_transformer_v2`).
    """
    from .case_types import case_typed_forward

    model = create_spanbert_transformer_v2(name, get_spans, tokenizer_config, transformer_config, mixed_precision,
                                           grad_scaler_config, quantize, cpu_bf16)
    if case_types:
        model.attrs["case_types"] = True
        model._func = partial(case_typed_forward, model._func)
    return model

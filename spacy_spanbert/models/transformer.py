"""`spacy-spanbert.SpanBERT.v1`: spacy-transformers' TransformerModel with SpanBERT-correct defaults.

The SpanBERT hub checkpoints ship no tokenizer_config.json, so AutoTokenizer would lower-case their cased vocab and
leave `model_max_length` unset; this builder fills both in. It also loads the encoder directories our pretraining
writes (`OUTPUT_DIR/encoder/`), turns "offline and not found" into one error naming the setting to change, and
stores the transformer weights as safetensors instead of pickles when the pipeline is saved.
"""
import json
import os
import warnings
from io import BytesIO
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import srsly
from spacy.tokens import Doc, Span
from spacy_transformers.layers.hf_shim import HFShim
from spacy_transformers.layers.transformer_model import TransformerModel
from spacy_transformers.layers.transformer_model import init as _trf_init

from .checkpoints import looks_cased, missing_package_hint

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
    try:
        _trf_init(model, X=X, Y=Y)
    except OSError as err:
        raise OSError(
            f"Could not load transformer checkpoint '{name}' (offline, or not a Hugging Face model id/directory): "
            f"set --paths.init_model or [components.*.model.name] to a local encoder directory or a short name "
            f"such as 'all-MiniLM-L6-v2'{missing_package_hint(name)}"
        ) from None


class SafetensorsHFShim(HFShim):
    """HFShim whose serialised weights are safetensors bytes, so saved pipelines contain no pickles."""

    def to_bytes(self) -> bytes:
        if self._hfmodel.transformer is None:
            return super().to_bytes()
        from safetensors.torch import save

        model = self._model
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        # HFShim pickles `state_dict()` with torch.save: shadow the method for this one call so it pickles an empty
        # dict instead of a second full copy of the weights, then put the safetensors bytes in its place.
        model.state_dict = dict
        try:
            msg = srsly.msgpack_loads(super().to_bytes())
        finally:
            del model.state_dict
        msg["state"] = save(state, metadata={"format": "pt"})
        return srsly.msgpack_dumps(msg)

    def from_bytes(self, bytes_data: bytes) -> "SafetensorsHFShim":
        msg = srsly.msgpack_loads(bytes_data)
        state = msg.get("state", b"")
        if not (state and state[8:10] == b'{"'):  # not safetensors (8-byte header length, then JSON)
            return super().from_bytes(bytes_data)
        import torch
        from safetensors.torch import load

        # Let HFShim rebuild config, tokenizer and an empty model from a weightless message, then load the
        # safetensors weights directly: no pickle is read and no extra copy of the weights is made.
        empty = BytesIO()
        torch.save({}, empty)
        msg["state"] = empty.getvalue()
        del bytes_data
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # HFShim warns that the (empty) state dict did not match strictly
            super().from_bytes(srsly.msgpack_dumps(msg))
        self._model.load_state_dict(load(state), strict=True)
        return self


INFERENCE_WINDOWS = 32


def _chunked_inference(forward: Callable) -> Callable:
    """Run at most INFERENCE_WINDOWS strided windows through the encoder at a time when predicting, so a
    20,000-word document needs the activation memory of a batch, not of the whole document. Slices of a
    WordpieceBatch keep the full padded width, so the outputs concatenate along the window axis."""
    import torch

    def cat(parts: List[Any]) -> Any:
        if isinstance(parts[0], torch.Tensor):
            return torch.cat(parts, dim=0)
        if isinstance(parts[0], tuple):
            return tuple(cat(list(group)) for group in zip(*parts))
        return parts[0]

    def chunked(model: Any, wordpieces: Any, is_train: bool) -> Any:
        if is_train or len(wordpieces) <= INFERENCE_WINDOWS:
            return forward(model, wordpieces, is_train)
        outputs = [
            forward(model, wordpieces[i : i + INFERENCE_WINDOWS], False)[0]
            for i in range(0, len(wordpieces), INFERENCE_WINDOWS)
        ]
        merged = type(outputs[0])(**{key: cat([out[key] for out in outputs]) for key in outputs[0].keys()})

        def backprop(d_output: Any) -> Any:
            raise ValueError("Chunked transformer outputs are for inference only (is_train=False)")

        return merged, backprop

    return chunked


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
    if get_spans is None:
        raise ValueError("create_spanbert_transformer needs get_spans, e.g. spacy-transformers.strided_spans.v1")
    model = TransformerModel(
        str(name),
        get_spans,
        spanbert_tokenizer_config(str(name), dict(tokenizer_config or {})),
        dict(transformer_config or {}),
        mixed_precision,
        dict(grad_scaler_config or {}),
    )
    model.init = _checked_init
    shim = model.layers[0].shims[0]
    shim.__class__ = SafetensorsHFShim
    model.layers[0]._func = _chunked_inference(model.layers[0]._func)
    return model

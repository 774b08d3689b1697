"""The Hugging Face encoder with its tokenizer, as one torch module for thinc's PyTorchWrapper.

`HFEncoder` holds what `spacy-spanbert.SpanBERT.v4` configures (checkpoint name, tokenizer and transformer settings,
`quantize`, `cpu_bf16`, `case_types`) and, once loaded, the transformer and its tokenizer. Its forward encodes a
padded batch of windows in length-sorted groups (`length_buckets`), under bfloat16 autocast where `cpu_bf16` is on,
and returns float32 outputs at the batch's padded width. `serialize_encoder` / `deserialize_encoder` are the
wrapper's hooks: config, tokenizer files and safetensors weights (int8 ones as plain tensors with their scales), no
pickles.
"""
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import srsly
import torch

from ..hf import check_tokenizer_files, looks_cased
from .case_types import CONFIG_KEY, add_case_type_rows
from .checkpoint_names import missing_package_hint
from .torch_bridge import cpu_state, safetensors_metadata

DEFAULT_MAX_LENGTH = 512
# Padded wordpieces per encoder call, in training and prediction. On CPU small calls are faster (a 512-piece call's
# activations stay in cache), and length-sorted calls skip the padding a batch of mixed-length sentences carries;
# GPUs want large calls.
CALL_TOKENS = 512
CALL_TOKENS_GPU = 8192
_QUANTIZE_KEY = "spanbert_quantize"


class HFEncoder(torch.nn.Module):
    """A Hugging Face encoder (`transformer`) and its `tokenizer`; both None until `load_pretrained` or loading."""

    def __init__(self, name: str, tokenizer_config: Dict[str, Any], transformer_config: Dict[str, Any],
                 quantize: Optional[str], cpu_bf16: bool, case_types: bool) -> None:
        super().__init__()
        self.name, self.quantize, self.cpu_bf16, self.case_types = name, quantize, cpu_bf16, case_types
        self.tokenizer_config, self.transformer_config = tokenizer_config, transformer_config
        self.transformer: Optional[torch.nn.Module] = None
        self.tokenizer: Any = None

    @property
    def case_type_offset(self) -> Optional[int]:
        """The token type of the first case row, or None without case types."""
        offset = getattr(getattr(self.transformer, "config", None), CONFIG_KEY, None)
        return None if offset is None else int(offset)

    def load_pretrained(self) -> None:
        """Load the checkpoint `name` (a local directory or a hub id), with one-line errors for what users get wrong."""
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        name = self.name
        text = str(name)
        if not Path(text).is_dir() and (text.startswith((".", "/", "~")) or text.count("/") > 1
                                        or (os.sep != "/" and os.sep in text)):
            raise FileNotFoundError(f"Transformer checkpoint directory '{name}' does not exist: set "
                                    f"[components.*.model.name] (or --paths.init_model) to an encoder directory")
        check_tokenizer_files(name, "[components.*.model.name] (or --paths.init_model)")
        try:
            tokenizer = AutoTokenizer.from_pretrained(text, **self.tokenizer_config)
            config = AutoConfig.from_pretrained(text, **{**self.transformer_config, "return_dict": True})
            transformer = AutoModel.from_pretrained(text, config=config)
        except OSError:
            raise OSError(
                f"Could not load transformer checkpoint '{name}' (offline, or not a Hugging Face model id/directory): "
                f"set --paths.init_model or [components.*.model.name] to a local encoder directory or a short name "
                f"such as 'all-MiniLM-L6-v2'{missing_package_hint(name)}"
            ) from None
        self.set_loaded(transformer, tokenizer)

    def set_loaded(self, transformer: torch.nn.Module, tokenizer: Any) -> None:
        """Take a loaded transformer and tokenizer: add the case rows, quantize, check what the settings need."""
        if self.case_types:
            if not getattr(tokenizer, "is_fast", False):
                raise ValueError("case_types needs a fast tokenizer (character offsets): set tokenizer_config "
                                 "use_fast = true, or case_types = false")
            add_case_type_rows(transformer)
        elif getattr(transformer.config, CONFIG_KEY, None) is not None:
            raise ValueError("This transformer was trained with case_types = true, but its config sets it to false: "
                             "set case_types = true")
        if self.quantize is not None:
            from .quantize import quantize_encoder, quantized_scheme

            if quantized_scheme(transformer) is None:
                quantize_encoder(transformer, self.quantize)
        self.transformer, self.tokenizer = transformer, tokenizer

    @property
    def hidden_size(self) -> int:
        return int(self.transformer.config.hidden_size)

    def plain_outputs(self) -> bool:
        """True unless the encoder also returns hidden states or attentions, whose shapes the grouped merge skips."""
        config = self.transformer.config
        return not (getattr(config, "output_hidden_states", False) or getattr(config, "output_attentions", False))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: Optional[torch.Tensor] = None,
                groups: Optional[List[Tuple[List[int], int]]] = None) -> Any:
        """Encode the batch; `groups` (row indices, columns to keep) splits it into calls whose outputs are merged
        back in batch order at the padded width (zeros in the padding). The merge is differentiable, so one backward
        reaches every group. The transformer's forward checks that the weights are loaded."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        bf16 = self.cpu_bf16 and input_ids.device.type == "cpu"
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if not groups or len(groups) == 1 and groups[0][1] >= input_ids.shape[1]:
                output = self.transformer(**inputs)
            else:
                outputs = []
                for rows, width in groups:
                    index = torch.as_tensor(rows, device=input_ids.device)
                    outputs.append(self.transformer(**{key: value[index, :width] for key, value in inputs.items()}))
                output = _merge(outputs, [rows for rows, _ in groups], int(input_ids.shape[0]),
                                int(input_ids.shape[1]))
        if bf16:  # numpy, which spaCy's side uses, has no bfloat16
            for key, value in list(output.items()):
                if isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16:
                    output[key] = value.float()
        return output


def length_buckets(lengths: Sequence[int], max_tokens: int) -> List[List[int]]:
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


def call_groups(attention_mask: Any, max_tokens: int, plain_outputs: bool) -> List[Tuple[List[int], int]]:
    """The encoder calls for a padded batch (numpy attention mask): length-sorted groups cut to their longest row
    when every row is right-padded and outputs are plain; otherwise rows in order, at full width, in calls of at most
    `max_tokens` padded wordpieces (left padding, hidden states); one call if that is all it takes."""
    import numpy

    n_rows, width = attention_mask.shape
    mask = attention_mask > 0
    lengths = mask.sum(axis=1)
    if plain_outputs and (mask == (numpy.arange(width) < lengths[:, None])).all():
        return [(rows, max(1, int(lengths[rows[0]]))) for rows in length_buckets([int(n) for n in lengths],
                                                                                   max_tokens)]
    if not plain_outputs:
        return [(list(range(n_rows)), width)]
    step = max(1, max_tokens // max(1, width))
    return [(list(range(i, min(i + step, n_rows))), width) for i in range(0, n_rows, step)]


def _merge(outputs: List[Any], groups: List[List[int]], n_rows: int, width: int) -> Any:
    """Put grouped outputs back in batch order at the batch's padded width (zeros in the padding)."""
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


def serialize_encoder(module: HFEncoder) -> bytes:
    """msgpack of the encoder's config, tokenizer files and safetensors weights; an empty config before loading."""
    if module.transformer is None:
        return srsly.msgpack_dumps({"config": {}})
    from safetensors.torch import save

    from .quantize import quantized_scheme, quantized_state

    scheme = quantized_scheme(module.transformer)
    metadata = {"format": "pt"}
    if scheme is not None:
        state = quantized_state(module.transformer)
        metadata[_QUANTIZE_KEY] = scheme
    else:
        state = cpu_state(module.transformer)
    with tempfile.TemporaryDirectory() as tmp:
        module.tokenizer.save_pretrained(tmp)
        files = {path.name: path.read_bytes() for path in Path(tmp).iterdir() if path.is_file()}
    return srsly.msgpack_dumps({"config": module.transformer.config.to_dict(), "tokenizer": files,
                                "use_fast": bool(module.tokenizer.is_fast), "state": save(state, metadata=metadata)})


def deserialize_encoder(module: HFEncoder, data: bytes, device: Any) -> HFEncoder:
    """Rebuild the transformer and tokenizer saved by `serialize_encoder` into `module` (the configured one)."""
    msg = srsly.msgpack_loads(data)
    if not msg.get("config"):
        return module
    from safetensors.torch import load
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    saved = safetensors_metadata(msg["state"]).get(_QUANTIZE_KEY)
    if saved is not None and saved != module.quantize:
        raise ValueError(f"The saved transformer is int8 ({saved!r}) but its config builds "
                         f"{'an fp32' if module.quantize is None else repr(module.quantize)} one: set its model's "
                         f"quantize = \"{saved}\" (or re-run spanbert-quantize)")
    if module.case_types != (msg["config"].get(CONFIG_KEY) is not None):
        raise ValueError(f"The saved transformer was trained with case_types = {not module.case_types}, but its "
                         f"config sets {module.case_types}: set case_types = {str(not module.case_types).lower()}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in msg["tokenizer"].items():
            (Path(tmp) / name).write_bytes(content)
        (Path(tmp) / "config.json").write_text(json.dumps(msg["config"]), encoding="utf8")
        tokenizer = AutoTokenizer.from_pretrained(tmp, use_fast=msg.get("use_fast", True))
        config = AutoConfig.from_pretrained(tmp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fresh model's random initialisation is overwritten right away
        transformer = AutoModel.from_config(config)
    state = load(msg["state"])
    if saved is not None:
        from .quantize import load_quantized_state, quantize_encoder

        load_quantized_state(quantize_encoder(transformer, saved), state)
    else:
        transformer.load_state_dict(state, strict=True)
    module.set_loaded(transformer, tokenizer)  # quantizes fp32 weights loaded under a quantizing config
    return module.to(device)


def spanbert_tokenizer_config(name: str, tokenizer_config: Dict[str, Any]) -> Dict[str, Any]:
    """Fill in the tokenizer settings a checkpoint without tokenizer_config.json needs.

    The SpanBERT hub checkpoints ship no tokenizer_config.json, so AutoTokenizer would lower-case their cased vocab
    and leave `model_max_length` unset. Explicit settings always win; then the checkpoint's own
    tokenizer_config.json; only then our defaults: `do_lower_case=False` for cased names and
    `model_max_length = min(512, max_position_embeddings)`.
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


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf8"))
    except (OSError, ValueError):
        return {}

"""int8 dynamic quantization of a SpanBERT transformer's Linear layers, and its weights as plain safetensors.

Why: on a CPU most of a prediction's time goes to the encoder's Linear layers (query/key/value, attention output,
feed-forward). Dynamic quantization (PyTorch's BERT tutorial) stores their weights as int8 and quantizes each
activation on the fly, which fbgemm runs faster than fp32. Embeddings, LayerNorms and the span scorer stay fp32.

Accuracy (bench/results/quantize.md, MiniLM-L6 on CoNLL-2003 dev): PyTorch's module quantizes activations to 7 bits
on x86 (`reduce_range`), because fbgemm's int8 kernels saturate 16-bit sums on CPUs without VNNI; that cost 0.5-0.7 F
here. Where fbgemm runs AVX512-VNNI kernels (int8 products summed straight into int32, no saturation) our
Linear keeps all 8 bits, and per-channel weight scales ("int8", the default) then lose nothing measurable. The saved
weights are the same either way; only the runtime activation range differs (`activation_bits`;
SPACY_SPANBERT_INT8_REDUCE_RANGE=1 forces PyTorch's 7 bits).

Quantized modules cannot be pickled into safetensors, so a quantized encoder is saved as plain tensors: for each
quantized Linear `P`, `P.weight_int8` (int8), `P.weight_scale` (float64, a scalar or one per output row),
`P.weight_zero_point` (int64, same shape) and `P.bias` (fp32); every other weight under its usual name. Loading builds
the fp32 encoder from its config, quantizes it the same way (`quantize_encoder`) and puts the saved int8 weights in.
This module imports torch: the builders and the CLI import it only when a model is quantized or loaded.
"""
import os
import warnings
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Dict, Iterator, Optional

import torch

from ..cpu import has_int8_vnni

# "int8": one weight scale per output row (per-channel); "int8_per_tensor": one per matrix (the PyTorch tutorial's)
SCHEMES = ("int8", "int8_per_tensor")
METADATA_KEY = "spanbert_quantize"
_SUFFIXES = (".weight_int8", ".weight_scale", ".weight_zero_point")


def check_scheme(scheme: Optional[str]) -> None:
    """Raise a one-line ValueError for a quantization setting we do not support (None means fp32)."""
    if scheme is not None and scheme not in SCHEMES:
        raise ValueError(f"Unknown quantize setting {scheme!r}: use one of {', '.join(map(repr, SCHEMES))} "
                         f"or null for fp32")


def check_cpu(scheme: Optional[str], device_type: str) -> None:
    """Quantized Linear layers run only on a CPU: refuse a GPU before any weights are built or moved."""
    if scheme is not None and device_type != "cpu":
        raise ValueError(f"An int8 transformer (quantize = {scheme!r}) runs on a CPU only, but the current device is "
                         f"'{device_type}': load it without spacy.require_gpu()/prefer_gpu() (--gpu-id -1), or use the "
                         f"fp32 pipeline on the GPU")


@contextmanager
def _quiet() -> Iterator[None]:
    """torch.ao.quantization warns that it is deprecated (in favour of torchao) on every call: say it once, here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        yield


REDUCE_RANGE_ENV = "SPACY_SPANBERT_INT8_REDUCE_RANGE"  # "1": 7-bit activations even with VNNI (as PyTorch does)


@lru_cache(maxsize=1)
def _reduce_range() -> bool:
    """True unless fbgemm runs AVX512-VNNI kernels here (`cpu.has_int8_vnni`) and REDUCE_RANGE_ENV is not "1"."""
    if os.environ.get(REDUCE_RANGE_ENV, "0") == "1":
        return True
    return not has_int8_vnni()


def activation_bits() -> int:
    """Bits the int8 Linears quantize activations to in this process: 8 with VNNI, else PyTorch's safe 7."""
    return 7 if _reduce_range() else 8


class DynamicInt8Linear(torch.nn.Module):
    """A Linear layer with int8 weights whose activations are quantized on the fly: PyTorch's dynamic int8 Linear,
    through torch's public quantized ops, with 8-bit activations where the CPU sums int8 products without
    saturating (`activation_bits`).

    At module level so that quantized pipelines pickle (multiprocessing's `spawn` start method needs it); the packed
    weights pickle as torch's own packed-parameters object."""

    def __init__(self, in_features: int, out_features: int, weight: torch.Tensor, bias: Optional[torch.Tensor]):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.set_weight_bias(weight, bias)

    @classmethod
    def from_float(cls, linear: torch.nn.Linear, scheme: str) -> "DynamicInt8Linear":
        """Weights quantized symmetrically to int8 as `torch.ao.quantization.quantize_dynamic` quantizes them: one
        scale per output row ("int8") or per matrix ("int8_per_tensor")."""
        with _quiet():
            from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

            qconfig = default_dynamic_qconfig if scheme == "int8_per_tensor" else per_channel_dynamic_qconfig
            observer = qconfig.weight()
            weight = linear.weight.detach().float()
            observer(weight)
            scale, zero_point = observer.calculate_qparams()
            if scheme == "int8_per_tensor":
                qweight = torch.quantize_per_tensor(weight, float(scale), int(zero_point), torch.qint8)
            else:
                qweight = torch.quantize_per_channel(weight, scale.double(), zero_point.long(), 0, torch.qint8)
        bias = None if linear.bias is None else linear.bias.detach().float()
        return cls(linear.in_features, linear.out_features, qweight, bias)

    def set_weight_bias(self, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> None:
        self.packed = torch.ops.quantized.linear_prepack(weight, bias)

    def weight(self) -> torch.Tensor:
        return torch.ops.quantized.linear_unpack(self.packed)[0]

    def bias(self) -> Optional[torch.Tensor]:
        return torch.ops.quantized.linear_unpack(self.packed)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x, self.packed, reduce_range=_reduce_range()).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, qscheme={self.weight().qscheme()}"


def quantize_encoder(module: Any, scheme: str) -> Any:
    """Replace every `torch.nn.Linear` inside `module` by a dynamic int8 Linear, in place; RETURNS `module`.

    In place, so every holder of the module (the HF wrapper, the thinc shim) keeps pointing at the quantized one.
    Only modules of exactly `torch.nn.Linear`'s type are replaced, as `quantize_dynamic` does.
    """
    check_scheme(scheme)
    module.eval()
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, name, DynamicInt8Linear.from_float(child, scheme))
    return module


def quantized_scheme(module: Any) -> Optional[str]:
    """The scheme `module`'s Linear layers are quantized with, or None when none is quantized (fp32)."""
    for sub in module.modules():
        if isinstance(sub, DynamicInt8Linear):
            return "int8" if sub.weight().qscheme() == torch.per_channel_affine else "int8_per_tensor"
    return None


def _quantized_modules(module: Any) -> Dict[str, Any]:
    return {name: sub for name, sub in module.named_modules() if isinstance(sub, DynamicInt8Linear)}


def quantized_state(module: Any) -> Dict[str, Any]:
    """Every weight of a quantized encoder as a plain contiguous CPU tensor (see the module docstring for names)."""

    quantized = _quantized_modules(module)
    # the int8 Linears hold no parameters or buffers of their own: state_dict() is every other weight
    state = {key: value.detach().contiguous().cpu() for key, value in module.state_dict().items()
             if isinstance(value, torch.Tensor)}
    with _quiet():
        for name, sub in quantized.items():
            weight = sub.weight()
            if weight.qscheme() == torch.per_channel_affine:
                scale = weight.q_per_channel_scales().to(torch.float64)
                zero_point = weight.q_per_channel_zero_points().to(torch.int64)
            else:
                scale = torch.tensor(weight.q_scale(), dtype=torch.float64)
                zero_point = torch.tensor(weight.q_zero_point(), dtype=torch.int64)
            state[f"{name}.weight_int8"] = weight.int_repr().contiguous()
            state[f"{name}.weight_scale"] = scale.contiguous()
            state[f"{name}.weight_zero_point"] = zero_point.contiguous()
            bias = sub.bias()
            if bias is not None:
                state[f"{name}.bias"] = bias.detach().contiguous()
    return state


def _owned_by(key: str, quantized: Dict[str, Any]) -> bool:
    return any(key.startswith(name + ".") for name in quantized)


def load_quantized_state(module: Any, state: Dict[str, Any]) -> None:
    """Load `quantized_state`'s tensors into an encoder already quantized with the saved scheme.

    Raises ValueError naming the first missing or unexpected weights, so a file from another model fails loudly.
    """

    quantized = _quantized_modules(module)
    plain = {key: value for key, value in state.items() if not _owned_by(key, quantized)}
    expected = set(module.state_dict())
    missing, unexpected = sorted(expected - plain.keys()), sorted(plain.keys() - expected)
    if missing or unexpected:
        raise ValueError(f"The saved int8 transformer weights do not fit the model built from its config (missing "
                         f"{missing[:3]}, unexpected {unexpected[:3]}): re-run spanbert-quantize on the fp32 pipeline")
    module.load_state_dict(plain, strict=True)
    with _quiet():
        for name, sub in quantized.items():
            try:
                values, scale, zero_point = (state[name + suffix] for suffix in _SUFFIXES)
            except KeyError:
                raise ValueError(f"The saved transformer has no int8 weights for {name}: re-run spanbert-quantize on "
                                 f"the fp32 pipeline") from None
            # back to the float weights the int8 values stand for, then quantized again on the same grid: exactly
            # the saved int8 values (torch's public constructors)
            if scale.dim() == 0:
                floats = (values.float() - float(zero_point)) * float(scale)
                weight = torch.quantize_per_tensor(floats, float(scale), int(zero_point), torch.qint8)
            else:
                shape = (-1,) + (1,) * (values.dim() - 1)
                floats = (values.float() - zero_point.reshape(shape).float()) * scale.reshape(shape).float()
                weight = torch.quantize_per_channel(floats, scale.double(), zero_point.long(), 0, torch.qint8)
            sub.set_weight_bias(weight, state.get(name + ".bias"))

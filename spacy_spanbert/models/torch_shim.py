"""The thinc layer that holds each of our torch modules (encoder, span scorer, relation scorer).

`torch_layer` builds thinc's PyTorchWrapper layer around our own `TorchShim`, a `PyTorchShim` subclass that adds three
things and changes nothing else:

- `module`: the torch module it was built with, under a name of ours. The module stays the same object for the
  layer's life: our serialisation hooks load into it in place, and heads whose shape is only known at
  initialisation (the span and relation scorers) sit in a `LazyModule` that builds its inner module then.
- a `predict` that leaves the module in eval mode, so that threads sharing a pipeline never see dropout switched on
  by another thread's finished prediction (thinc's own returns the module to train mode after each call);
- parameter averages (`[training.optimizer] use_averages = true`) that reach PyTorch weights. thinc's optimizer keeps
  the average of each PyTorch weight under the key its shim updated it with, `(shim.id, parameter name)`, but
  `PyTorchShim.use_params` (thinc 8.3) looks averages up as `"pytorch_{id}_{name}"` strings, so spaCy's training
  loop, which evaluates and saves inside `nlp.use_params(optimizer.averages)`, would never see them. Our shim reads
  them under the optimizer's keys (a workaround in our layer for thinc 8.3; thinc's own lookup is kept as fallback).
"""
import contextlib
from typing import Any, Callable, Dict, Iterator, Optional

import torch
from thinc.api import ArgsKwargs, Model, PyTorchGradScaler, PyTorchShim, xp2torch
from thinc.layers.pytorchwrapper import forward as pytorch_forward


class TorchShim(PyTorchShim):
    """thinc's PyTorchShim with a handle on its module and parameter averages that reach it."""

    def __init__(self, module: torch.nn.Module, *, mixed_precision: bool = False, **kwargs: Any) -> None:
        super().__init__(module, mixed_precision=mixed_precision, **kwargs)
        self.module = module
        self.mixed_precision = mixed_precision

    def predict(self, inputs: ArgsKwargs) -> Any:
        """thinc's predict, except that the module stays in eval mode afterwards. thinc 8.3's `PyTorchShim.predict`
        puts the module back in train mode after every call, which switches dropout on in the middle of another
        thread's prediction when threads share a pipeline; `begin_update` sets train mode itself."""
        self.module.eval()
        with torch.no_grad(), torch.autocast(device_type="cuda", enabled=self.mixed_precision):
            return self.module(*inputs.args, **inputs.kwargs)

    def use_params(self, params: Dict[Any, Any]) -> Any:
        return use_averaged_params(self, params)


def torch_layer(
    module: torch.nn.Module,
    *,
    convert_inputs: Callable,
    convert_outputs: Callable,
    serialize_model: Callable[[Any], bytes],
    deserialize_model: Callable[[Any, bytes, Any], Any],
    mixed_precision: bool = False,
    grad_scaler: Optional[PyTorchGradScaler] = None,
) -> Model:
    """thinc's `PyTorchWrapper_v3` layer (its forward, converters and serialisation hooks) on a `TorchShim`."""
    shim = TorchShim(module, mixed_precision=mixed_precision, grad_scaler=grad_scaler,
                     serialize_model=serialize_model, deserialize_model=deserialize_model)
    return Model("pytorch", pytorch_forward, attrs={"convert_inputs": convert_inputs, "convert_outputs": convert_outputs},
                 shims=[shim], dims={"nI": None, "nO": None})


def torch_module(layer: Model) -> Any:
    """The torch module of a layer built by `torch_layer`."""
    return layer.shims[0].module


class LazyModule(torch.nn.Module):
    """A torch module whose working part (`inner`) is built later, at initialisation or loading, from `settings`
    (the configured ones, which loading checks against the saved ones) and the dimensions known then."""

    def __init__(self, what: str, **settings: Any) -> None:
        super().__init__()
        self.what, self.settings = what, settings
        self.register_module("inner", None)

    def build(self, inner: torch.nn.Module) -> None:
        self.inner = inner

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.inner is None:
            raise ValueError(f"The {self.what} is not built yet: initialise the component (nlp.initialize) first")
        return self.inner(*args, **kwargs)


@contextlib.contextmanager
def use_averaged_params(shim: TorchShim, params: Dict[Any, Any]) -> Iterator[None]:
    """Swap in the averages `params` holds for the shim's parameters (keyed `(shim.id, name)`), restore on exit.

    Parameters are copied in place, so whoever holds the module's tensors sees the averages inside the block and
    the live weights after it. Without such keys this is thinc's own `use_params` (string keys).
    """
    named = dict(shim.module.named_parameters())
    found = {name: params[(shim.id, name)] for name in named if (shim.id, name) in params}
    if not found:
        with PyTorchShim.use_params(shim, params):
            yield
        return
    backup = {name: named[name].detach().clone() for name in found}
    with torch.no_grad():
        for name, value in found.items():
            param = named[name]
            param.copy_(xp2torch(value, device=param.device).reshape(param.shape).to(param.dtype))
    try:
        yield
    finally:
        with torch.no_grad():
            for name, value in backup.items():
                named[name].copy_(value)

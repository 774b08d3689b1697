"""Parameter averages (`[training.optimizer] use_averages = true`) that reach PyTorch weights.

thinc's optimizer keeps the average of each PyTorch weight under the key its shim updated it with,
`(shim.id, parameter name)`, but `PyTorchShim.use_params` (thinc 8.3, and spacy-transformers' HFShim, which inherits
it) looks averages up as `"pytorch_{id}_{name}"` strings. So spaCy's training loop, which evaluates and saves inside
`nlp.use_params(optimizer.averages)`, never sees the averages of an encoder or a span scorer: they cost a copy of
every weight and change nothing. The shims of our transformer and scorer read them under the optimizer's keys.
"""
import contextlib
from typing import Any, Dict, Iterator

import torch
from thinc.api import PyTorchShim, xp2torch


@contextlib.contextmanager
def use_averaged_params(shim: PyTorchShim, params: Dict[Any, Any]) -> Iterator[None]:
    """Swap in the averages `params` holds for the shim's parameters (keyed `(shim.id, name)`), restore on exit.

    Parameters are copied in place, so whoever holds the module's tensors sees the averages inside the block and
    the live weights after it. Without such keys this is thinc's own `use_params` (string keys).
    """
    named = dict(shim._model.named_parameters())
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


class AveragedPyTorchShim(PyTorchShim):
    """thinc's PyTorchShim whose `use_params` finds the optimizer's averages (see the module docstring)."""

    def use_params(self, params: Dict[Any, Any]) -> Any:
        return use_averaged_params(self, params)

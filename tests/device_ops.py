"""A CPU stand-in for a GPU's Ops: catches host (numpy) arrays leaking into device-array code without a GPU.

Under `CupyOps` every array a layer hands to `model.ops` or mixes into arithmetic with `ops.xp` arrays must be a
cupy array; a numpy array there raises (`TypeError: Argument 'ary' has incorrect type ...`). `DeviceOps` makes the
same mistake fail on a CPU: its arrays are `DeviceArray`, a numpy subclass standing for "lives on the device". Every
Ops method except the explicit host<->device conversions (`asarray*`, `to_numpy`) rejects a plain numpy float array
among its arguments (host integer arrays are index-like, which cupy accepts), and arithmetic that mixes a DeviceArray with a plain numpy array (other than a 0-d scalar) raises,
as cupy does. Ops results and ufunc results are DeviceArrays again.
"""
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import numpy
from thinc.api import NumpyOps
from thinc.types import Ragged

# Ops methods that legitimately take host data (they are the host -> device / device -> host transfers).
TRANSFERS = {"asarray", "asarray1i", "asarray2i", "asarray3i", "asarray4i", "asarray1f", "asarray2f", "asarray3f",
             "asarray4f", "asarray_f", "asarray_i", "to_numpy", "alloc", "alloc1f", "alloc2f", "alloc3f", "alloc4f",
             "alloc1i", "alloc2i", "alloc3i", "alloc4i", "alloc_f", "alloc_i", "device_type", "device_id"}


class HostArrayError(TypeError):
    """A numpy (host) array reached device-array code."""


class DeviceArray(numpy.ndarray):
    """An array that 'lives on the device': mixing it with host arrays raises, as cupy does."""

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        for x in inputs + tuple(kwargs.get("out", ()) or ()):
            if _is_host(x):
                raise HostArrayError(f"{ufunc.__name__}: host numpy array {x.shape} mixed with a device array")
        plain = [x.view(numpy.ndarray) if isinstance(x, DeviceArray) else x for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(o.view(numpy.ndarray) if isinstance(o, DeviceArray) else o for o in kwargs["out"])
        result = getattr(ufunc, method)(*plain, **kwargs)
        return _to_device(result)


def _is_host(x: Any) -> bool:
    return isinstance(x, numpy.ndarray) and not isinstance(x, DeviceArray) and x.ndim > 0


def _to_device(x: Any) -> Any:
    if isinstance(x, DeviceArray):
        return x
    if isinstance(x, numpy.ndarray):
        return x.view(DeviceArray)
    if isinstance(x, tuple):
        return tuple(_to_device(v) for v in x)
    if isinstance(x, list):
        return [_to_device(v) for v in x]
    if isinstance(x, Ragged):
        return Ragged(_to_device(x.data), _to_device(x.lengths))
    return x


def _check_device(name: str, x: Any) -> None:
    # host integer arrays are index-like (lengths, positions), which cupy accepts wherever it takes indices
    if _is_host(x) and x.dtype.kind not in "iub":
        raise HostArrayError(f"Ops.{name} got a host numpy array {x.shape}: convert with ops.asarray first")
    if isinstance(x, (list, tuple)):
        for v in x:
            _check_device(name, v)
    elif isinstance(x, Ragged):
        _check_device(name, x.data)
        _check_device(name, x.lengths)


class _DeviceXp:
    """`ops.xp`: numpy's functions, returning DeviceArrays and refusing host arrays among their inputs."""

    def __getattr__(self, name: str) -> Any:
        target = getattr(numpy, name)
        if not callable(target) or isinstance(target, type):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            # the data argument must be on the device; index-like arguments (split points, shapes) may be host
            # sequences, as cupy accepts them
            if args and name not in ("asarray", "array", "ascontiguousarray"):
                _check_device(f"xp.{name}", args[0])
            return _to_device(target(*args, **kwargs))

        return call


class DeviceOps(NumpyOps):
    """NumpyOps whose arrays are DeviceArrays and whose methods refuse host arrays (see the module docstring)."""

    name = "device_double"
    xp = _DeviceXp()

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name.startswith("_") or not callable(attr) or name in ("xp",):
            return attr
        if name == "to_numpy":
            return lambda data, *a, **k: numpy.asarray(data).view(numpy.ndarray).copy()
        if name in TRANSFERS:
            return lambda *a, **k: _to_device(attr(*(_plain(v) for v in a), **k))

        def checked(*args: Any, **kwargs: Any) -> Any:
            for v in list(args) + list(kwargs.values()):
                _check_device(name, v)
            return _to_device(attr(*args, **kwargs))

        return checked


def _plain(x: Any) -> Any:
    return x.view(numpy.ndarray) if isinstance(x, DeviceArray) else x


@contextmanager
def device_ops() -> Iterator[DeviceOps]:
    """Make `DeviceOps` the current Ops and treat every torch tensor as living on its device.

    On a GPU `torch2xp` turns a CUDA tensor into a cupy array whatever `ops` it is given; here every tensor is on the
    CPU, so the real function would return host arrays. While this context is open, `torch2xp` (wherever a module
    imported it) returns DeviceArrays unless it is explicitly asked for NumpyOps (plain) output.
    """
    import thinc.util
    from thinc.api import get_current_ops, set_current_ops

    original = thinc.util.torch2xp

    def torch2xp(tensor: Any, *, ops: Any = None) -> Any:
        result = original(tensor, ops=None)
        if isinstance(ops, NumpyOps) and not isinstance(ops, DeviceOps):
            return result
        return _to_device(result)

    patched = [m for m in list(sys.modules.values()) if getattr(m, "torch2xp", None) is original]
    previous = get_current_ops()
    ops = DeviceOps()
    set_current_ops(ops)
    for module in patched:
        setattr(module, "torch2xp", torch2xp)
    try:
        yield ops
    finally:
        for module in patched:
            setattr(module, "torch2xp", original)
        set_current_ops(previous)

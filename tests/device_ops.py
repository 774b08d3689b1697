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
from typing import Any, Callable, Iterator, List

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
    """An array that 'lives on the device': mixing it with host arrays raises, as cupy does, and so does handing it
    to a numpy function (`numpy.isin(device_array, ...)`): go through `ops.xp`, or move it with `ops.to_numpy`."""

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        raise HostArrayError(f"numpy.{func.__name__} got a device array: use ops.xp.{func.__name__} or ops.to_numpy")

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
            # Ops methods call ops.xp themselves, on the plain views they were given: only check callers outside
            if args and not _INSIDE_OPS and name not in ("asarray", "array", "ascontiguousarray"):
                _check_device(f"xp.{name}", args[0])
            return _to_device(target(*_plain(args), **_plain(kwargs)))

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
            return lambda data, *a, **k: _plain(data).copy()
        if name in TRANSFERS:
            return lambda *a, **k: _to_device(_inside_ops(attr, *_plain(a), **_plain(k)))

        def checked(*args: Any, **kwargs: Any) -> Any:
            if not _INSIDE_OPS:
                for v in list(args) + list(kwargs.values()):
                    _check_device(name, v)
            return _to_device(_inside_ops(attr, *_plain(args), **_plain(kwargs)))

        return checked


_INSIDE_OPS: List[int] = []  # non-empty while an Ops method runs (its own numpy/xp work is the device's code)


def _inside_ops(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    _INSIDE_OPS.append(1)
    try:
        return fn(*args, **kwargs)
    finally:
        _INSIDE_OPS.pop()


def _plain(x: Any) -> Any:
    """DeviceArrays (also inside tuples, lists, dicts and Ragged) as plain numpy views, for numpy's own code."""
    if isinstance(x, DeviceArray):
        return x.view(numpy.ndarray)
    if isinstance(x, tuple):
        return tuple(_plain(v) for v in x)
    if isinstance(x, list):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, Ragged):
        return Ragged(_plain(x.data), _plain(x.lengths))
    return x


@contextmanager
def device_ops() -> Iterator[DeviceOps]:
    """Make `DeviceOps` the current Ops and treat every torch tensor as living on its device.

    On a GPU `torch2xp` turns a CUDA tensor into a cupy array whatever `ops` it is given; here every tensor is on the
    CPU, so the real function would return host arrays. While this context is open, `torch2xp` (wherever a module
    imported it) returns DeviceArrays unless it is explicitly asked for NumpyOps (plain) output, and
    `get_array_module` / `get_array_ops` give a DeviceArray the device's `xp` / Ops, as they give a cupy array cupy /
    CupyOps.
    """
    import thinc.util
    from thinc.api import get_current_ops, set_current_ops

    original = thinc.util.torch2xp

    def torch2xp(tensor: Any, *, ops: Any = None) -> Any:
        result = original(tensor, ops=None)
        if isinstance(ops, NumpyOps) and not isinstance(ops, DeviceOps):
            return result
        return _to_device(result)

    original_gam = thinc.util.get_array_module

    def get_array_module(array: Any) -> Any:  # cupy for a cupy array, on a GPU
        return DeviceOps.xp if isinstance(array, DeviceArray) else original_gam(array)

    import thinc.backends

    original_gao = thinc.backends.get_array_ops
    ops = DeviceOps()

    def get_array_ops(array: Any) -> Any:  # CupyOps for a cupy array, on a GPU
        return ops if isinstance(array, DeviceArray) else original_gao(array)

    replacements = {"torch2xp": (original, torch2xp), "get_array_module": (original_gam, get_array_module),
                    "get_array_ops": (original_gao, get_array_ops)}
    patched = [(m, name) for m in list(sys.modules.values()) for name, (old, _) in replacements.items()
               if getattr(m, name, None) is old]
    previous = get_current_ops()
    set_current_ops(ops)
    for module, name in patched:
        setattr(module, name, replacements[name][1])
    try:
        yield ops
    finally:
        # also modules imported inside the context, which bound the replacements by name
        for module in list(sys.modules.values()):
            for name, (old, new) in replacements.items():
                if getattr(module, name, None) is new:
                    setattr(module, name, old)
        set_current_ops(previous)

"""A CuPy stand-in for machines without a GPU: its arrays count every read back to the host.

``DeviceArray`` is a NumPy array playing a ``cupy.ndarray``: as on a GPU, its
``__bool__``, ``__float__``, ``__int__``, ``item``, ``tolist`` and ``get`` read
device memory on the host, a blocking sync, and ``array``/``asarray`` of host
data is a host-to-device copy. Inside ``with STANDIN.step():`` each of them is
recorded in ``STANDIN.events``. The module functions portnn's fast paths call
(``clip``, ``zeros``, ``lib.stride_tricks``) keep the device type, and
``sliding_window_view`` follows CuPy's own code (``cupy/lib/stride_tricks.py``):
it copies ``window_shape`` to the device and tests it there with ``if``.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import numpy as np


class Recorder:
    def __init__(self) -> None:
        self.active, self.events = False, []

    @contextlib.contextmanager
    def step(self) -> Iterator[list[str]]:
        self.active, self.events = True, []
        try:
            yield self.events
        finally:
            self.active = False

    def record(self, event: str) -> None:
        if self.active:
            self.events.append(event)


STANDIN = Recorder()


def _reads(name: str):
    base = getattr(np.ndarray, name)

    def read(self, *args, **kwargs):
        STANDIN.record(f"sync:{name}")
        return base(self, *args, **kwargs)

    return read


class DeviceArray(np.ndarray):
    """A ``cupy.ndarray`` stand-in (see the module docstring)."""

    __bool__ = _reads("__bool__")
    __float__ = _reads("__float__")
    __int__ = _reads("__int__")
    __index__ = _reads("__index__")
    item = _reads("item")
    tolist = _reads("tolist")

    def get(self) -> np.ndarray:
        STANDIN.record("sync:get")
        return np.asarray(self).copy()


def to_device(host) -> DeviceArray:
    """Host data on the stand-in device (a host-to-device copy, outside a step)."""
    return np.array(host).view(DeviceArray)


def _array(obj, dtype=None, copy=True, subok=False):
    if not isinstance(obj, DeviceArray):
        STANDIN.record("h2d")
    return np.array(obj, dtype=dtype, copy=copy or None).view(DeviceArray)


def _as_strided(x, shape=None, strides=None):
    return np.lib.stride_tricks.as_strided(x, shape=shape, strides=strides).view(DeviceArray)


def _sliding_window_view(x, window_shape, axis=None, *, subok=False, writeable=False):
    """CuPy's algorithm, step for step where it touches the device."""
    window_shape = tuple(window_shape) if np.iterable(window_shape) else (window_shape,)
    x = _array(x, copy=False, subok=subok)
    window_shape_array = _array(window_shape)  # host tuple -> device
    if cupy.any(window_shape_array < 0):  # a device bool read on the host
        raise ValueError("`window_shape` cannot contain negative values")
    axis = tuple(range(x.ndim)) if axis is None else tuple(a % x.ndim for a in np.atleast_1d(axis))
    out_strides = x.strides + tuple(x.strides[ax] for ax in axis)
    trimmed = list(x.shape)
    for ax, dim in zip(axis, window_shape, strict=True):
        trimmed[ax] -= dim - 1
    return _as_strided(x, strides=out_strides, shape=(*trimmed, *window_shape))


def _keep(fn):
    return lambda *args, **kwargs: np.asarray(fn(*args, **kwargs)).view(DeviceArray)


cupy = types.ModuleType("cupy")  # what portnn's fast paths see as ``cupy``
cupy.ndarray = DeviceArray
cupy.array = _array
cupy.asarray = lambda obj, dtype=None: _array(obj, dtype=dtype, copy=False)
cupy.any = _keep(np.any)
cupy.clip = _keep(np.clip)
cupy.zeros = _keep(np.zeros)
cupy.lib = types.SimpleNamespace(stride_tricks=types.SimpleNamespace(
    as_strided=_as_strided, sliding_window_view=_sliding_window_view))

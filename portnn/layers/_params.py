"""``layer.params``: a dict whose entries cannot be set wrong.

``layer.params[key] = value`` is how tests, loaders and users set weights. As
PyTorch's ``load_state_dict`` and Keras' ``set_weights`` do, the value is
checked and copied: its shape must match the parameter it replaces, it is cast
to the layer's float dtype, host data (NumPy arrays, lists) is moved to the
layer's backend, and an array of another backend or device is a
:class:`~portnn.DeviceMismatchError`. The copy means training never writes
into the caller's array, not even a tensor sharing memory with a NumPy array
(``torch.from_numpy``).
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from ..backends import Backend, DeviceMismatchError, backend_of, get_backend


class Params(dict):
    """The parameters of ``layer``, checked and copied on assignment."""

    def __init__(self, layer: Any) -> None:
        super().__init__()
        self._layer = layer

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, self._checked(key, value))

    def store(self, key: str, value: Any) -> None:
        """Keep an array portnn computed from the parameter itself (an optimizer step): no checks."""
        super().__setitem__(key, value)

    def adopt(self, values: dict[str, Any]) -> None:
        """Replace every entry with arrays portnn made itself (``Layer.to``): no checks, no copies."""
        super().clear()
        super().update(values)

    def __reduce__(self) -> tuple[Any, ...]:
        # copy.deepcopy and pickle restore the entries as they are: they were checked when set,
        # and the half-restored layer has no dtype yet to check them against.
        return _restore, (self._layer, dict(self))

    def _checked(self, key: str, value: Any) -> Any:
        where = f"{_name(self._layer)}.params[{key!r}]"
        current = self.get(key)
        dtype = getattr(self._layer, "dtype", None) or (
            str(current.dtype).rpartition(".")[2] if current is not None else "float32")
        target = self._backend()
        if array_api_compat.is_array_api_obj(value) and not isinstance(value, np.ndarray | np.generic):
            source = backend_of(value)
            if source != target:
                raise DeviceMismatchError(
                    f"{where}: got an array on {source} but the layer lives on {target}; pass a "
                    f"NumPy array (portnn moves it) or move the layer with "
                    f"layer.to({source.name!r}, {source.device_name!r})")
            xp = target.xp
            if not xp.isdtype(value.dtype, "real floating"):
                raise TypeError(f"{where}: got an array of dtype {value.dtype}; parameters are "
                                f"floating point ({dtype}): cast it first")
            value = xp.astype(value, target.dtype(dtype), copy=True)
        else:
            host = np.asarray(value)
            if isinstance(value, np.ndarray | np.generic) and host.dtype.kind != "f":
                raise TypeError(f"{where}: got an array of dtype {host.dtype}; parameters are "
                                f"floating point ({dtype}): cast it first, e.g. "
                                f"value.astype({dtype!r})")
            if host.dtype.kind not in "biuf":
                raise TypeError(f"{where}: expected an array of numbers, got {type(value).__name__} "
                                f"of dtype {host.dtype}")
            value = target.asarray(host, dtype=dtype, copy=True)
        if current is not None and tuple(value.shape) != tuple(current.shape):
            raise ValueError(f"{where}: shape {tuple(value.shape)} does not match the layer's "
                             f"{tuple(current.shape)}")
        return value

    def _backend(self) -> Backend:
        first = next(iter(self.values()), None)
        return get_backend() if first is None else backend_of(first)


def _restore(layer: Any, values: dict[str, Any]) -> Params:
    params = Params(layer)
    params.adopt(values)
    return params


def _name(layer: Any) -> str:
    name = getattr(layer, "name", None)
    return name if isinstance(name, str) else type(layer).__name__

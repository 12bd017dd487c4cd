"""The Layer base class: parameters, gradients, placement and config."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from ..backends import Backend, activate_for, backend_of, check_device, get_backend
from ._params import Params

if TYPE_CHECKING:
    import numpy as np


class Layer:
    """A layer: its parameters plus an explicit ``forward`` and ``backward``.

    ``forward(x, training)`` caches what ``backward`` needs; ``backward(dy)``
    fills ``self.grads`` (same keys as ``self.params``) and returns ``dx``.
    """

    def __init__(self) -> None:
        # Assignments are checked and copied (shape, dtype, backend): see ``_params.Params``.
        self.params: dict[str, Any] = Params(self)
        self.grads: dict[str, Any] = {}
        # State that is saved and moved with the layer but not trained (e.g. running means).
        self.buffers: dict[str, Any] = {}

    def forward(self, x: Any, training: bool = False) -> Any:
        raise NotImplementedError

    def backward(self, dy: Any) -> Any:
        raise NotImplementedError

    def backward_params(self, dy: Any) -> None:
        """Fill ``self.grads`` only: a network's first layer, whose ``dx`` nobody reads."""
        self.backward(dy)

    def __call__(self, x: Any, training: bool = False) -> Any:
        """``forward`` after checking that ``x`` is on the parameters' device, with that device current."""
        be = self.backend
        if be is not None:
            check_device(type(self).__name__, x, be)
        with be.activate() if be is not None else activate_for(x):
            return self.forward(x, training)

    def add_param(self, name: str, value: np.ndarray, buffer: bool = False) -> None:
        """Register a host-initialised parameter (or untrained buffer) on the active backend."""
        if not buffer:
            self.params[name] = value  # checked, cast and moved to the active backend
            return
        self.buffers[name] = get_backend().asarray(value, dtype=getattr(self, "dtype", "float32"))

    @property
    def backend(self) -> Backend | None:
        """The backend the parameters live on (``None`` for a parameter-free layer)."""
        first = next(iter(self.params.values()), None)
        return None if first is None else backend_of(first)

    def to(self, backend: str | Backend | None = None, device: str | None = None,
           dtype: str | None = None) -> Layer:
        """Move (and optionally cast) the parameters to another backend, in place."""
        target = get_backend(backend, device)
        if dtype is not None and hasattr(self, "dtype"):
            self.dtype = dtype
        moved = {name: target.move(value, dtype) for name, value in self.params.items()}
        if isinstance(self.params, Params):
            self.params.adopt(moved)
        else:
            self.params = moved
        for name, value in self.buffers.items():
            self.buffers[name] = target.move(value, dtype)
        self.grads.clear()
        return self

    def config(self) -> dict[str, Any]:
        """The constructor arguments, read back from attributes of the same name."""
        names = list(inspect.signature(type(self).__init__).parameters)[1:]
        return {name: getattr(self, name) for name in names if hasattr(self, name)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

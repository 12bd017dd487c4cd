"""The Layer base class: parameters, gradients, placement and config."""

from __future__ import annotations

import gc
import inspect
from typing import TYPE_CHECKING, Any

from ..backends import Backend, activate_for, backend_of, check_device, get_backend
from . import symbolic
from ._params import Params

if TYPE_CHECKING:
    import numpy as np


REGISTRY: dict[str, type[Layer]] = {}  # every Layer subclass by its checkpoint name


def class_name(cls: type) -> str:
    """The name a checkpoint stores for a layer class: ``"Dense"`` for portnn's own, else
    ``"module.QualName"`` (``"__main__.Square"``), so that a user's class never shadows one."""
    own = cls.__module__.split(".")[0] == "portnn"
    return cls.__name__ if own else f"{cls.__module__}.{cls.__qualname__}"


def _holds_layers(value: Any) -> bool:
    """A layer, or a list, tuple or dict holding one (an attribute dict made already, too)."""
    if isinstance(value, dict):
        value = list(value.values())
    return isinstance(value, Layer) or (
        isinstance(value, list | tuple) and any(_holds_layers(v) for v in value))


class Layer:
    """A layer: its parameters plus an explicit ``forward`` and ``backward``.

    ``forward(x, training)`` caches what ``backward`` needs; ``backward(dy)``
    fills ``self.grads`` (same keys as ``self.params``) and returns ``dx``.
    A subclass registers itself for checkpoints when its class statement runs.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        REGISTRY[class_name(cls)] = cls

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
        """``forward`` after checking that ``x`` is on the parameters' device, with that device current.

        On symbolic tensors (:func:`portnn.Input`) it computes nothing and records a node of a
        graph instead: the output's symbolic tensor, for :class:`portnn.Model`.
        """
        if symbolic.is_symbolic(x):
            return symbolic.call(self, x)
        be = self.backend
        xs = x if isinstance(x, list | tuple) else (x,)  # a merge layer takes a list
        if be is not None:
            for a in xs:
                check_device(type(self).__name__, a, be)
        with be.activate() if be is not None else activate_for(xs[0] if xs else x):
            return self.forward(x, training)

    def add_param(self, name: str, value: np.ndarray, buffer: bool = False) -> None:
        """Register a host-initialised parameter (or untrained buffer) on the active backend."""
        if not buffer:
            self.params[name] = value  # checked, cast and moved to the active backend
            return
        self.buffers[name] = get_backend().asarray(value, dtype=getattr(self, "dtype", "float32"))

    # ------------------------------------------------------------------ children and paths

    def children(self) -> dict[str, Layer]:
        """The layers this one is built from, by name: attributes holding a layer or a list of layers.

        Found when asked (never on the hot path), so a layer registers a child by assigning it:
        ``self.conv1 = Conv2D(...)`` is ``"conv1"``, ``self.blocks = [a, b]`` is ``"blocks.0"``, ...
        """
        # On CPython 3.11 reading vars(self) turns the instance's attributes into a dict for
        # good, and every later `self.x` in forward/backward pays for it (a Tanh forward 0.46 ->
        # 0.57 us). gc.get_referents reads them in place: a leaf holding no layer is answered so.
        if not any(_holds_layers(value) for value in gc.get_referents(self)):
            return {}
        found = {}
        for name, value in vars(self).items():
            if isinstance(value, Layer):
                found[name] = value
            elif isinstance(value, list | tuple) and value and all(isinstance(v, Layer) for v in value):
                found.update({f"{name}.{i}": v for i, v in enumerate(value)})
        return found

    def layers_by_path(self, prefix: str = "") -> list[tuple[str, Layer]]:
        """This layer and every descendant, each once (a shared layer at its first path), parents first."""
        found, seen = [], set()

        def walk(layer: Layer, path: str) -> None:
            if id(layer) in seen:
                return
            seen.add(id(layer))
            found.append((path, layer))
            for name, child in layer.children().items():
                walk(child, f"{path}{name}.")

        walk(self, prefix)
        return found

    def named_parameters(self) -> list[tuple[str, Layer, str]]:
        """Every parameter here and below: ``(path, owning layer, key)``, e.g. ``("block.conv1.weight",
        conv1, "weight")``; a layer used twice is listed once."""
        return [(path + key, layer, key) for path, layer in self.layers_by_path() for key in layer.params]

    def named_buffers(self) -> list[tuple[str, Layer, str]]:
        """As :meth:`named_parameters`, for the untrained state (running means, ...)."""
        return [(path + key, layer, key) for path, layer in self.layers_by_path() for key in layer.buffers]

    # ------------------------------------------------------------------ one call's state

    def call_state(self) -> list[tuple[Layer, dict[str, Any]]]:
        """What the last ``forward`` left for ``backward``, here and in every child.

        ``forward`` keeps its caches as attributes (``self.x = x``); this copies the attribute
        dicts, and :meth:`restore_call_state` puts them back before that call's ``backward``.
        A model using a layer twice keeps one per use, so the call owns its state, not the layer.
        """
        return [(layer, dict(vars(layer))) for _, layer in self.layers_by_path()]

    @staticmethod
    def restore_call_state(state: list[tuple[Layer, dict[str, Any]]]) -> None:
        """Make the call that :meth:`call_state` saved the last one again (its caches back)."""
        for layer, attributes in state:
            vars(layer).update(attributes)

    # ------------------------------------------------------------------ placement

    @property
    def backend(self) -> Backend | None:
        """The backend the parameters live on (``None`` for a parameter-free layer)."""
        first = next(iter(self.params.values()), None)
        if first is None:
            found = self.named_parameters()
            first = found[0][1].params[found[0][2]] if found else None
        return None if first is None else backend_of(first)

    def to(self, backend: str | Backend | None = None, device: str | None = None,
           dtype: str | None = None) -> Layer:
        """Move (and optionally cast) the parameters of this layer and its children, in place."""
        target = get_backend(backend, device)
        for _, layer in self.layers_by_path():
            layer._move(target, dtype)
        return self

    def _move(self, target: Backend, dtype: str | None) -> None:
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

    def config(self) -> dict[str, Any]:
        """The constructor arguments, read back from attributes of the same name."""
        names = list(inspect.signature(type(self).__init__).parameters)[1:]
        return {name: getattr(self, name) for name in names if hasattr(self, name)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

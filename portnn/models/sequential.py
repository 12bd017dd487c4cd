"""Sequential: a stack of layers, and ``from_architecture``'s list of dicts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .. import _checks, losses, optimizers
from .. import layers as layers_module
from ..backends import Backend
from ..layers import Layer
from .base import BaseModel, backward_use

__all__ = ["Sequential", "from_architecture"]


class Sequential(BaseModel):
    """Layers applied in order, trained with a loss and an optimizer.

    Args:
        layers: the layers, first to last (their parameter paths are ``"0.weight"``, ...).
        loss: a :class:`portnn.losses.Loss` or its name (``"mse"``, ``"crossentropy"``).
        optimizer: a :class:`portnn.optimizers.Optimizer` or its name.
        backend, device: move the parameters there (default: where the layers were built).
        metrics: names from :mod:`portnn.metrics` (``"accuracy"``, ``"top5_accuracy"``,
            ``"mae"``) logged by ``fit``/``evaluate``; default ``["accuracy"]`` for a
            classification loss, none otherwise.

    Without a loss and an optimizer it is a layer like any other: a block to nest.

    Example:
        >>> model = portnn.Sequential([portnn.Dense(2, 3), portnn.Tanh(), portnn.Dense(3, 1)],
        ...                           loss="mse", optimizer=portnn.SGD(0.1))
        >>> history = model.fit(x, y, epochs=100, batch_size=1)
    """

    def __init__(self, layers: Sequence[Layer], loss: str | losses.Loss | None = None,
                 optimizer: str | optimizers.Optimizer | None = None,
                 backend: str | Backend | None = None, device: str | None = None,
                 metrics: Sequence[str] | None = None) -> None:
        self.layers = _layer_list(layers)
        counts: dict[int, int] = {}
        for layer in self.layers:
            counts[id(layer)] = counts.get(id(layer), 0) + 1
        # Layers used more than once: each use keeps its own call state; their gradients add up.
        self._shared = {i for i, n in counts.items() if n > 1}
        self._states: list[Any] = []
        super().__init__(loss, optimizer, backend, device, metrics)

    def children(self) -> dict[str, Layer]:
        return {str(i): layer for i, layer in enumerate(self.layers)}

    def forward(self, x: Any, training: bool = False) -> Any:
        if self._shared:
            return self._forward_shared(x, training)
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, dy: Any) -> Any:
        if self._shared:
            return self._backward_shared(dy)
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy

    def _forward_shared(self, x: Any, training: bool) -> Any:
        self._states = []
        for layer in self.layers:
            x = layer.forward(x, training)
            self._states.append(layer.call_state() if id(layer) in self._shared else None)
        return x

    def _backward_shared(self, dy: Any) -> Any:
        seen: set[int] = set()
        for layer, state in zip(reversed(self.layers), reversed(self._states), strict=True):
            dy = backward_use(layer, dy, state, seen)
        return dy

    def backward_params(self, dy: Any) -> None:
        if self._shared:
            self.backward(dy)
            return
        # Nothing reads the gradient below the first trained layer: stop there, without its dx.
        layers, first = self.layers, 0
        # A loop, no generator per step; `params` first: named_parameters() only for blocks.
        while first < len(layers) and not (layers[first].params or layers[first].named_parameters()):
            first += 1
        if first < len(layers):
            for layer in layers[:first:-1]:
                dy = layer.backward(dy)
            layers[first].backward_params(dy)

    def config(self) -> dict[str, Any]:
        return {}


def _layer_list(layers: Any) -> list[Any]:
    """``Sequential``'s ``layers``: a list or tuple of ``Layer`` instances (classes and strings named)."""
    if isinstance(layers, Layer):
        raise TypeError(f"Sequential: layers must be a list of layers, got a single "
                        f"{type(layers).__name__}; write Sequential([{type(layers).__name__}(...)])")
    if isinstance(layers, str | bytes | dict) or not isinstance(layers, Iterable):
        raise TypeError(f"Sequential: layers must be a list of Layer instances, got {_checks._got(layers)}")
    layers = list(layers)
    for i, layer in enumerate(layers):
        if isinstance(layer, type) and issubclass(layer, Layer):
            raise TypeError(f"Sequential: layers[{i}] is the class {layer.__name__}, not a layer; "
                            f"write {layer.__name__}() (with its arguments)")
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential: layers[{i}] must be a Layer instance, got {_checks._got(layer)}")
    return layers


_ACTIVATIONS = {"relu": layers_module.ReLU, "sigmoid": layers_module.Sigmoid,
                "tanh": layers_module.Tanh, "softmax": layers_module.Softmax,
                "leaky_relu": layers_module.LeakyReLU}


def from_architecture(architecture: Sequence[dict[str, Any]], **kwargs: Any) -> Sequential:
    """Build a dense network from ``{"input_dim", "output_dim", "activation"}`` dicts.

    Example:
        >>> model = portnn.from_architecture([
        ...     {"input_dim": 2, "output_dim": 4, "activation": "relu"},
        ...     {"input_dim": 4, "output_dim": 1, "activation": "sigmoid"}], loss="binary_crossentropy")
    """
    built: list[Layer] = []
    for i, spec in enumerate(_checks.architecture(architecture)):
        built.append(layers_module.Dense(spec["input_dim"], spec["output_dim"],
                                         init=spec.get("init", "glorot_uniform")))
        act = (spec.get("activation") or "linear").lower()
        if act not in ("linear", "none"):
            if act not in _ACTIVATIONS:
                raise ValueError(f"architecture[{i}]: unknown activation {act!r}; valid: "
                                 f"{sorted(_ACTIVATIONS)} or 'linear'")
            built.append(_ACTIVATIONS[act]())
    return Sequential(built, **kwargs)

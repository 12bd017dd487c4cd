"""Residual blocks: ``x + f(x)``, the building block of ResNets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._base import Layer


class Residual(Layer):
    """``f(x) + x``, with ``f`` the stack of ``layers``; ``f(x) + shortcut(x)`` with a projection
    ``shortcut`` layer (a ``Conv2D(c_in, c_out, 1, stride=2)`` where ``f`` changes the shape, as in
    ResNet's downsampling blocks).

    The gradient of ``x`` is the sum of both branches'. Parameters have paths ``"0.weight"``,
    ``"shortcut.weight"`` inside the block (``"2.0.weight"`` as the third layer of a model).

    Example:
        >>> block = portnn.Residual([portnn.Dense(8, 8), portnn.ReLU(), portnn.Dense(8, 8)])
        >>> block.forward(np.ones((2, 8), np.float32)).shape
        (2, 8)
    """

    def __init__(self, layers: Sequence[Layer], shortcut: Layer | None = None) -> None:
        super().__init__()
        self.name = "Residual"
        if isinstance(layers, Layer) or not isinstance(layers, Sequence) or not layers:
            raise TypeError(f"Residual: layers must be a non-empty list of layers, got {layers!r}")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Residual: layers[{i}] must be a Layer instance, "
                                f"got {type(layer).__name__}")
        if shortcut is not None and not isinstance(shortcut, Layer):
            raise TypeError(f"Residual: shortcut must be a Layer or None, got {type(shortcut).__name__}")
        self.layers, self.shortcut = list(layers), shortcut

    def children(self) -> dict[str, Layer]:
        found = {str(i): layer for i, layer in enumerate(self.layers)}
        return found if self.shortcut is None else {**found, "shortcut": self.shortcut}

    def forward(self, x: Any, training: bool = False) -> Any:
        y = x
        for layer in self.layers:
            y = layer.forward(y, training)
        skip = x if self.shortcut is None else self.shortcut.forward(x, training)
        if tuple(y.shape) != tuple(skip.shape):
            raise ValueError(f"Residual: the layers turn {tuple(x.shape)} into {tuple(y.shape)} but "
                             f"the shortcut gives {tuple(skip.shape)}; they must match (give a projection "
                             f"shortcut=..., e.g. a 1x1 Conv2D or a Dense, that changes the shape alike)")
        return y + skip

    def backward(self, dy: Any) -> Any:
        dx = dy
        for layer in reversed(self.layers):
            dx = layer.backward(dx)
        return dx + (dy if self.shortcut is None else self.shortcut.backward(dy))

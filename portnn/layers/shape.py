"""Layers that only change an array's shape: Flatten and Reshape."""

from __future__ import annotations

import math
from typing import Any

from .. import _checks
from ..backends import _fast as fast
from ..backends import array_namespace
from ._base import Layer


class Flatten(Layer):
    """``(batch, d1, d2, ...)`` to ``(batch, d1 * d2 * ...)``.

    Example:
        >>> portnn.Flatten().forward(np.ones((4, 32, 7, 7), np.float32)).shape
        (4, 1568)
    """

    def forward(self, x: Any, training: bool = False) -> Any:
        if x.ndim < 1:
            raise ValueError(f"Flatten expects an input with a batch axis, got shape {tuple(x.shape)}")
        self.x = x
        return array_namespace(x).reshape(x, (x.shape[0], -1))

    def backward(self, dy: Any) -> Any:
        return fast.like(array_namespace(dy).reshape(dy, tuple(self.x.shape)), self.x)


class Reshape(Layer):
    """Reshape each sample to ``shape`` (the batch axis is kept), e.g. ``(784,)`` to ``(1, 28, 28)``.

    Example:
        >>> portnn.Reshape((1, 28, 28)).forward(np.ones((4, 784), np.float32)).shape
        (4, 1, 28, 28)
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        if isinstance(shape, int) and not isinstance(shape, bool):
            shape = (shape,)
        if not isinstance(shape, tuple | list) or not shape:
            raise TypeError(f"Reshape: shape must be a tuple of ints such as (1, 28, 28), got {shape!r}")
        self.shape = tuple(_checks.integer("Reshape", "shape", d, minimum=-1) for d in shape)
        if 0 in self.shape or self.shape.count(-1) > 1:
            raise ValueError(f"Reshape: shape must hold ints >= 1 and at most one -1, got {shape!r}")

    def forward(self, x: Any, training: bool = False) -> Any:
        size, known = math.prod(x.shape[1:]), math.prod(d for d in self.shape if d != -1)
        if x.ndim < 1 or (size != known if -1 not in self.shape else not known or size % known):
            raise ValueError(f"Reshape({self.shape}) cannot reshape samples of shape "
                             f"{tuple(x.shape[1:])} ({size} values) to {self.shape}")
        self.x = x
        return array_namespace(x).reshape(x, (x.shape[0], *self.shape))

    def backward(self, dy: Any) -> Any:
        return fast.like(array_namespace(dy).reshape(dy, tuple(self.x.shape)), self.x)

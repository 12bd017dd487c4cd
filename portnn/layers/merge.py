"""Merge layers: several inputs, one output (Keras' ``Add``, ``Multiply``, ``Concatenate``).

``forward`` takes a list of arrays and ``backward`` returns a list of gradients, one per input.
In a :class:`portnn.Model` they join branches: ``portnn.Add()([x, f(x)])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..backends import array_namespace
from ._base import Layer

__all__ = ["Add", "Concatenate", "Multiply"]


class Merge(Layer):
    """The base of layers taking a list of at least two arrays of one shape (``Concatenate``: but
    along its axis)."""

    def _inputs(self, xs: Sequence[Any], except_axis: int | None = None) -> list[Any]:
        name = type(self).__name__
        if not isinstance(xs, list | tuple) or len(xs) < 2:
            raise TypeError(f"{name}: takes a list of at least two inputs, got "
                            f"{type(xs).__name__ if not isinstance(xs, list | tuple) else len(xs)}")
        first = tuple(xs[0].shape)
        for i, x in enumerate(xs[1:], 1):
            shape = tuple(x.shape)
            same = [d for k, d in enumerate(shape) if k != except_axis]
            if len(shape) != len(first) or same != [d for k, d in enumerate(first) if k != except_axis]:
                along = "" if except_axis is None else f" (but along axis {except_axis})"
                raise ValueError(f"{name}: inputs must have the same shape{along}; input 0 has "
                                 f"{_shown(first)} and input {i} has {_shown(shape)}")
        return list(xs)


class Add(Merge):
    """The sum of its inputs: ``Add()([a, b])`` is ``a + b``; each input's gradient is ``dy``."""

    def forward(self, xs: Sequence[Any], training: bool = False) -> Any:
        xs = self._inputs(xs)
        self.count = len(xs)
        y = xs[0]
        for x in xs[1:]:
            y = y + x
        return y

    def backward(self, dy: Any) -> list[Any]:
        return [dy] * self.count


class Multiply(Merge):
    """The element-wise product of its inputs; input ``i``'s gradient is ``dy`` times the others."""

    def forward(self, xs: Sequence[Any], training: bool = False) -> Any:
        self.xs = self._inputs(xs)
        y = self.xs[0]
        for x in self.xs[1:]:
            y = y * x
        return y

    def backward(self, dy: Any) -> list[Any]:
        dxs = []
        for i in range(len(self.xs)):
            dx = dy
            for j, x in enumerate(self.xs):
                if j != i:
                    dx = dx * x
            dxs.append(dx)
        return dxs


class Concatenate(Merge):
    """Its inputs joined along ``axis`` (of the batch's shape, as in Keras: ``-1`` is the last,
    ``1`` the channels of ``(N, C, H, W)``); the gradient is ``dy`` cut back into their sizes.

    Args:
        axis: the axis to join along; not 0, the batch axis.

    Example:
        >>> portnn.Concatenate()([np.ones((2, 3)), np.zeros((2, 1))]).shape
        (2, 4)
    """

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"Concatenate: axis must be an int, got {axis!r}")
        self.axis = axis

    def forward(self, xs: Sequence[Any], training: bool = False) -> Any:
        ndim = len(xs[0].shape) if isinstance(xs, list | tuple) and xs else 0
        axis = self.axis + ndim if self.axis < 0 else self.axis
        if not 0 < axis < ndim:
            raise ValueError(f"Concatenate: axis={self.axis} does not name a feature axis of inputs of "
                             f"shape {_shown(tuple(xs[0].shape)) if ndim else '()'}; axis 0 is the batch "
                             f"axis, so use 1..{ndim - 1} or -1..-{ndim - 1}")
        xs = self._inputs(xs, except_axis=axis)
        self._axis, self.sizes = axis, [x.shape[axis] for x in xs]
        return array_namespace(xs[0]).concat(xs, axis=axis)

    def backward(self, dy: Any) -> list[Any]:
        dxs, start = [], 0
        for size in self.sizes:
            cut = [slice(None)] * len(dy.shape)
            cut[self._axis] = slice(start, start + size)
            dxs.append(dy[tuple(cut)])
            start += size
        return dxs


def _shown(shape: tuple[int, ...]) -> str:
    return str(tuple(int(d) for d in shape))

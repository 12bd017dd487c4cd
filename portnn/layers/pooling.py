"""2-D max and average pooling over NCHW inputs (no padding, as PyTorch's defaults)."""

from __future__ import annotations

from typing import Any

import array_api_extra as xpx

from ..backends import array_namespace
from ._base import Layer
from .conv import Pair, check_nchw, out_size, pair, scatter_windows, windows


class _Pool2D(Layer):
    """Shared argument handling: ``stride`` defaults to ``kernel_size``."""

    def __init__(self, kernel_size: Pair, stride: Pair | None = None) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.name = f"{type(self).__name__}({kernel_size})"
        self._k = pair(kernel_size, self.name, "kernel_size")
        self._s = self._k if stride is None else pair(stride, self.name, "stride")

    def _windows(self, x: Any) -> list[Any]:
        check_nchw(self.name, x)
        self._shape = tuple(x.shape)
        return windows(x, self._k, self._s, out_size(self.name, self._shape[2:], self._k, self._s))

    def _gather(self, grads: list[Any]) -> Any:
        """The input gradient from one ``(N, C, oh, ow)`` gradient per kernel offset."""
        if self._k != self._s:
            return scatter_windows(grads, self._shape, self._k, self._s)
        # Non-overlapping tiles: interleave the offsets with two stacks and a free reshape,
        # cheaper than zero-filling and scatter-adding K strided slices.
        xp = array_namespace(grads[0])
        (kh, kw), (n, c, h, w), (oh, ow) = self._k, self._shape, grads[0].shape[2:]
        rows = [xp.stack(grads[i * kw:(i + 1) * kw], axis=-1) for i in range(kh)]
        dx = xp.reshape(xp.stack(rows, axis=3), (n, c, oh * kh, ow * kw))
        if (oh * kh, ow * kw) == (h, w):
            return dx
        return xpx.pad(dx, ((0, 0), (0, 0), (0, h - oh * kh), (0, w - ow * kw)), xp=xp)


class MaxPool2D(_Pool2D):
    """Maximum over each window; the gradient goes to the first maximum, as in PyTorch.

    Example:
        >>> portnn.MaxPool2D(2).forward(np.ones((1, 3, 28, 28), np.float32)).shape
        (1, 3, 14, 14)
    """

    def forward(self, x: Any, training: bool = False) -> Any:
        xp = array_namespace(x)
        self.x, parts = x, self._windows(x)
        # A running maximum over the kernel offsets: K cheap element-wise passes, no K-wide copy.
        self.y = parts[0]
        for part in parts[1:]:
            self.y = xp.maximum(self.y, part)
        return self.y

    def backward(self, dy: Any) -> Any:
        xp = array_namespace(dy)
        grads, rest = [], dy
        # Offsets in row-major kernel order: the first one equal to the maximum takes all of
        # what is left of dy (all of it), later equal ones get zero, as in PyTorch.
        # Multiplying by masks is much faster than xp.where, which branches per element.
        for part in windows(self.x, self._k, self._s, tuple(self.y.shape[2:])):
            grads.append(rest * xp.astype(part == self.y, dy.dtype))
            rest = rest - grads[-1]
        return self._gather(grads)


class AvgPool2D(_Pool2D):
    """Mean over each window.

    Example:
        >>> portnn.AvgPool2D(2).forward(np.ones((1, 3, 28, 28), np.float32)).shape
        (1, 3, 14, 14)
    """

    def forward(self, x: Any, training: bool = False) -> Any:
        parts = self._windows(x)
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total / len(parts)

    def backward(self, dy: Any) -> Any:
        parts = self._k[0] * self._k[1]
        return self._gather([dy / parts] * parts)

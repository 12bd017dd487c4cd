"""Element-wise activations and softmax."""

from __future__ import annotations

from typing import Any

from .. import _checks
from ..backends import _fast as fast
from ..backends import array_namespace
from ._base import Layer


class ReLU(Layer):
    """``max(x, 0)``."""

    def forward(self, x: Any, training: bool = False) -> Any:
        # clip, not maximum(x, 0.0): on torch that turns 0.0 into a tensor (a host copy).
        self.y = fast.clip(x, min=0.0)
        return self.y

    def backward(self, dy: Any) -> Any:
        # A multiply by a 0/1 mask is several times faster than where(): NumPy's where
        # branches per element, and a ReLU's random sign pattern defeats branch prediction.
        return dy * fast.mask(self.y > 0, dy.dtype)


class LeakyReLU(Layer):
    """``x`` where positive, ``negative_slope * x`` elsewhere."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = _checks.real("LeakyReLU", "negative_slope", negative_slope)

    def forward(self, x: Any, training: bool = False) -> Any:
        self.mask = x > 0
        return array_namespace(x).where(self.mask, x, self.negative_slope * x)

    def backward(self, dy: Any) -> Any:
        return array_namespace(dy).where(self.mask, dy, self.negative_slope * dy)


class Sigmoid(Layer):
    """``1 / (1 + exp(-x))``."""

    def forward(self, x: Any, training: bool = False) -> Any:
        # The tanh form never overflows, unlike 1 / (1 + exp(-x)) for very negative x.
        self.y = 0.5 * array_namespace(x).tanh(0.5 * x) + 0.5
        return self.y

    def backward(self, dy: Any) -> Any:
        return dy * self.y * (1.0 - self.y)


class Tanh(Layer):
    """Hyperbolic tangent."""

    def forward(self, x: Any, training: bool = False) -> Any:
        self.y = array_namespace(x).tanh(x)
        return self.y

    def backward(self, dy: Any) -> Any:
        return dy * (1.0 - self.y * self.y)


class Softmax(Layer):
    """``exp(x) / sum(exp(x))`` along ``axis``.

    For classification prefer raw logits with ``CrossEntropy``, which fuses
    the softmax in a numerically stable way.
    """

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"Softmax: axis must be an int such as -1, got {axis!r}")
        self.axis = axis

    def forward(self, x: Any, training: bool = False) -> Any:
        if not -x.ndim <= self.axis < x.ndim:
            raise ValueError(f"Softmax(axis={self.axis}): the input has {x.ndim} dimensions (shape "
                             f"{tuple(x.shape)}); pass an axis in [{-x.ndim}, {x.ndim}), e.g. -1")
        xp = array_namespace(x)
        e = xp.exp(x - xp.max(x, axis=self.axis, keepdims=True))
        self.y = e / xp.sum(e, axis=self.axis, keepdims=True)
        return self.y

    def backward(self, dy: Any) -> Any:
        # Jacobian-vector product of softmax: y * (dy - <dy, y>).
        xp = array_namespace(dy)
        return self.y * (dy - xp.sum(dy * self.y, axis=self.axis, keepdims=True))

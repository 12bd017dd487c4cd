"""Inverted dropout."""

from __future__ import annotations

from typing import Any

from .. import _checks
from ..backends import _fast as fast
from ..backends import array_namespace, backend_of
from ._base import Layer


class Dropout(Layer):
    """Zero each value with probability ``p`` while training and scale the rest by ``1 / (1 - p)``.

    The identity when ``training=False``. Masks come from the backend's own
    seeded generator (:func:`portnn.seed`), on the input's device.

    Example:
        >>> portnn.Dropout(0.5).forward(np.ones((2, 4), np.float32), training=True)
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = _checks.fraction("Dropout", "p", p)

    def forward(self, x: Any, training: bool = False) -> Any:
        if not training or self.p == 0.0:
            self.mask = None
            return x
        xp = array_namespace(x)
        keep = backend_of(x).uniform(tuple(x.shape)) >= self.p
        # Scaling the mask, not the output, lets backward reuse it as is; in x's memory layout
        # (Conv2D's on NumPy), so both multiplies run over one layout.
        self.mask = fast.like(xp.astype(keep, x.dtype) / (1.0 - self.p), x)
        return x * self.mask

    def backward(self, dy: Any) -> Any:
        return dy if self.mask is None else dy * self.mask

"""Weight initializers, drawn on the host from portnn's seeded generator.

Drawing on the host and moving the result to the device makes one seed give
bit-identical initial weights on every backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .backends import init_rng

Initializer = Callable[[tuple[int, ...], int, int], np.ndarray]

__all__ = ["Initializer", "get", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "ones",
           "zeros"]


def _uniform(shape: tuple[int, ...], limit: float) -> np.ndarray:
    return init_rng().uniform(-limit, limit, size=shape).astype(np.float32)


def _normal(shape: tuple[int, ...], std: float) -> np.ndarray:
    return (init_rng().standard_normal(size=shape) * std).astype(np.float32)


def glorot_uniform(shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    """Glorot/Xavier uniform: U(-a, a) with a = sqrt(6 / (fan_in + fan_out))."""
    return _uniform(shape, math.sqrt(6.0 / (fan_in + fan_out)))


def glorot_normal(shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    """Glorot/Xavier normal: N(0, 2 / (fan_in + fan_out))."""
    return _normal(shape, math.sqrt(2.0 / (fan_in + fan_out)))


def he_uniform(shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    """He/Kaiming uniform for ReLU nets: U(-a, a) with a = sqrt(6 / fan_in)."""
    return _uniform(shape, math.sqrt(6.0 / fan_in))


def he_normal(shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    """He/Kaiming normal for ReLU nets: N(0, 2 / fan_in)."""
    return _normal(shape, math.sqrt(2.0 / fan_in))


def normal(shape: tuple[int, ...], fan_in: int = 0, fan_out: int = 0) -> np.ndarray:
    """N(0, 1), as ``torch.nn.Embedding``'s weight."""
    return _normal(shape, 1.0)


def zeros(shape: tuple[int, ...], fan_in: int = 0, fan_out: int = 0) -> np.ndarray:
    """All zeros (the default for biases)."""
    return np.zeros(shape, np.float32)


def ones(shape: tuple[int, ...], fan_in: int = 0, fan_out: int = 0) -> np.ndarray:
    """All ones (the default for normalisation scales)."""
    return np.ones(shape, np.float32)


_BY_NAME = {f.__name__: f for f in (glorot_uniform, glorot_normal, he_uniform, he_normal, normal, ones,
                                     zeros)}
# PyTorch's names for the same distributions.
_BY_NAME.update({"xavier_uniform": glorot_uniform, "xavier_normal": glorot_normal,
                 "kaiming_uniform": he_uniform, "kaiming_normal": he_normal})


def get(init: str | Initializer) -> Initializer:
    """An initializer by name (``"he_normal"``, ``"xavier_uniform"``, ...) or a callable passed through.

    Example:
        >>> portnn.initializers.get("he_normal")((3, 2), 3, 2).shape
        (3, 2)
    """
    if callable(init):
        return init
    if not isinstance(init, str):
        raise TypeError(f"init must be an initializer name {sorted(_BY_NAME)} or a callable "
                        f"(shape, fan_in, fan_out) -> array, got {type(init).__name__}")
    if init.lower() not in _BY_NAME:
        raise ValueError(f"unknown initializer {init!r}; valid names: {sorted(_BY_NAME)}")
    return _BY_NAME[init.lower()]

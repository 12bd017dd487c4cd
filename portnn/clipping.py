"""Gradient clipping for the optimizers, computed on the device without host read-backs.

The scale factors are 0-d device arrays bounded with ``xp.minimum``: no
``float()``, no Python branch on a gradient's value. The formulas are
PyTorch's: ``clip_grad_norm_`` scales by ``min(max_norm / (norm + 1e-6), 1)``,
``clip_grad_value_`` clamps to ``[-clipvalue, clipvalue]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .backends import array_namespace

__all__ = ["check", "clip_gradients", "clip_layers"]

EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s


def check(owner: str, clipnorm: float | None, global_clipnorm: float | None,
          clipvalue: float | None) -> None:
    """Clear errors for bad clipping arguments (at most one of them, each positive and finite)."""
    given = {k: v for k, v in (("clipnorm", clipnorm), ("global_clipnorm", global_clipnorm),
                               ("clipvalue", clipvalue)) if v is not None}
    for name, value in given.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{owner}: {name} must be a positive number, got {value!r}")
    if len(given) > 1:
        raise ValueError(f"{owner}: give at most one of clipnorm, global_clipnorm and clipvalue, "
                         f"got {sorted(given)}")


def clip_gradients(grads: list[Any], clipnorm: float | None = None,
                   global_clipnorm: float | None = None,
                   clipvalue: float | None = None) -> list[Any]:
    """The gradients clipped (new arrays; the list itself when nothing is set).

    ``clipnorm`` bounds each gradient's norm on its own, ``global_clipnorm``
    the norm of all of them together, ``clipvalue`` each element.
    """
    if not grads or (clipnorm is None and global_clipnorm is None and clipvalue is None):
        return grads
    xp = array_namespace(grads[0])
    if clipvalue is not None:
        return [xp.clip(g, min=-clipvalue, max=clipvalue) for g in grads]
    if clipnorm is not None:
        return [g * xp.minimum(clipnorm / (xp.sqrt(xp.sum(g * g)) + EPS), 1.0) for g in grads]
    total = xp.sum(grads[0] * grads[0])
    for g in grads[1:]:
        total = total + xp.sum(g * g)
    scale = xp.minimum(global_clipnorm / (xp.sqrt(total) + EPS), 1.0)
    return [g * xp.astype(scale, g.dtype, copy=False) for g in grads]


def clip_layers(layers: Iterable[Any], clipnorm: float | None = None,
                global_clipnorm: float | None = None, clipvalue: float | None = None) -> list[Any]:
    """Replace every ``layer.grads[key]`` by its clipped value; returns ``layers`` as a list."""
    layers = list(layers)
    if clipnorm is None and global_clipnorm is None and clipvalue is None:
        return layers
    stores = [(layer.grads, key) for layer in layers for key in layer.params if key in layer.grads]
    clipped = clip_gradients([store[key] for store, key in stores], clipnorm, global_clipnorm,
                             clipvalue)
    for (store, key), g in zip(stores, clipped, strict=True):
        store[key] = g
    return layers

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

__all__ = ["check", "clip_gradients"]

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


def clip_gradients(layers: Iterable[Any], clipnorm: float | None = None,
                   global_clipnorm: float | None = None,
                   clipvalue: float | None = None) -> list[Any]:
    """Replace each ``layer.grads[key]`` by its clipped gradient; returns ``layers`` as a list.

    ``clipnorm`` bounds each parameter's gradient norm on its own,
    ``global_clipnorm`` the norm of all gradients together, ``clipvalue``
    each element.
    """
    layers = list(layers)
    if clipnorm is None and global_clipnorm is None and clipvalue is None:
        return layers
    stores = [layer.grads for layer in layers if layer.grads]
    if clipvalue is not None:
        for grads in stores:
            for key, g in grads.items():
                grads[key] = array_namespace(g).clip(g, min=-clipvalue, max=clipvalue)
    elif clipnorm is not None:
        for grads in stores:
            for key, g in grads.items():
                xp = array_namespace(g)
                grads[key] = g * xp.minimum(clipnorm / (xp.sqrt(xp.sum(g * g)) + EPS), 1.0)
    else:
        squares = [array_namespace(g).sum(g * g) for grads in stores for g in grads.values()]
        if not squares:
            return layers
        xp = array_namespace(squares[0])
        total = squares[0]
        for s in squares[1:]:
            total = total + s
        scale = xp.minimum(global_clipnorm / (xp.sqrt(total) + EPS), 1.0)
        for grads in stores:
            for key, g in grads.items():
                grads[key] = g * xp.astype(scale, g.dtype, copy=False)
    return layers

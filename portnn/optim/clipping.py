"""The gradient transforms of the shared optimizer step: clipping, then coupled weight decay.

Clipping is computed on the device without host read-backs. The scale factors
are 0-d device arrays bounded by a clip at 1 (``_fast.clip``: Python-float
bounds, no scalar-to-array copy): no ``float()``, no Python branch on a
gradient's value. The formulas are PyTorch's: ``clip_grad_norm_`` scales by
``min(max_norm / (norm + 1e-6), 1)``, ``clip_grad_value_`` clamps to
``[-clipvalue, clipvalue]``. Weight decay is torch.optim's coupled L2 term,
``g + weight_decay * w``; AdamW's decoupled decay is part of its formula.
"""

from __future__ import annotations

import math
from typing import Any

from ..backends import _fast as fast
from ..backends import array_namespace

__all__ = ["check", "clip_gradients", "weight_decay"]

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
        return [fast.clip(g, min=-clipvalue, max=clipvalue) for g in grads]
    if clipnorm is not None:
        return [g * fast.clip(clipnorm / (xp.sqrt(xp.sum(g * g)) + EPS), max=1.0) for g in grads]
    total = xp.sum(grads[0] * grads[0])
    for g in grads[1:]:
        total = total + xp.sum(g * g)
    scale = fast.clip(global_clipnorm / (xp.sqrt(total) + EPS), max=1.0)
    return [g * xp.astype(scale, g.dtype, copy=False) for g in grads]



def weight_decay(ops: Any, grads: list[Any], params: list[Any], rate: float) -> list[Any]:
    """The gradients plus the L2 term ``rate * w`` (new arrays; the list itself when ``rate`` is 0).

    ``ops`` are the multi-tensor operations of :func:`portnn.backends._fast.foreach`.
    """
    return ops.add(grads, params, alpha=rate) if rate else grads

"""Finite-difference gradient checks for layers and losses.

Central differences in float64 (float32 with a looser tolerance on a device
without float64) against the layer's or loss's own ``backward``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backends import Backend, BackendError, backend_of, get_backend
from .layers import Layer
from .losses import Loss

__all__ = ["GradcheckError", "gradcheck", "gradcheck_loss", "numerical_gradient"]


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with the finite-difference one."""


@dataclass(frozen=True)
class _Precision:
    dtype: str
    eps: float
    rtol: float
    atol: float


_F64 = _Precision("float64", 1e-6, 1e-5, 1e-7)
_F32 = _Precision("float32", 1e-2, 5e-2, 5e-3)


def _precision(be: Backend) -> _Precision:
    try:
        be.dtype("float64")
    except BackendError:
        return _F32
    return _F64


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, eps: float) -> np.ndarray:
    """Central differences of a scalar function of a host array."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f(x)
        flat[i] = old - eps
        down = f(x)
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


def _compare(name: str, analytic: np.ndarray, numeric: np.ndarray, p: _Precision) -> None:
    if analytic.shape != numeric.shape:
        raise GradcheckError(f"{name}: gradient shape {analytic.shape} != {numeric.shape}")
    if not np.allclose(analytic, numeric, rtol=p.rtol, atol=p.atol):
        worst = np.max(np.abs(analytic - numeric))
        raise GradcheckError(f"{name}: analytic and numerical gradients differ (max |diff| "
                             f"{worst:.3g}, rtol={p.rtol}, atol={p.atol})")


def gradcheck(layer: Layer, x: Any, training: bool = False, seed: int = 0) -> None:
    """Check ``layer.backward`` (input and parameter gradients) by finite differences.

    ``x``: the input, or a list of inputs for a layer taking several (a merge layer, a
    :class:`~portnn.Model` with several inputs): each input's gradient is checked.
    The layer's parameters are cast in place to float64 where the device has it.
    Raises :class:`GradcheckError` on a mismatch.

    Example:
        >>> portnn.gradcheck(portnn.Dense(3, 2), np.random.rand(4, 3))
        >>> portnn.gradcheck(portnn.Multiply(), [np.random.rand(4, 3), np.random.rand(4, 3)])
    """
    many = isinstance(x, list | tuple)
    first = x[0] if many else x
    be = backend_of(first) if not isinstance(first, np.ndarray) else (layer.backend or get_backend())
    with be.activate():
        _gradcheck(layer, list(x) if many else [x], many, be, training, seed)


def _gradcheck(layer: Layer, xs: list[Any], many: bool, be: Backend, training: bool, seed: int) -> None:
    p = _precision(be)
    layer.to(be, dtype=p.dtype)
    hosts = [be.to_numpy(x) if not isinstance(x, np.ndarray) else x for x in xs]
    # Integer inputs (an Embedding's indices) stay integers and have no gradient to check.
    hosts = [h.astype(be.index_dtype if h.dtype.kind in "biu" else p.dtype) for h in hosts]
    dev = lambda a: be.asarray(a, dtype=p.dtype)  # noqa: E731
    devs = [be.asarray(h, dtype=str(h.dtype)) for h in hosts]
    run = lambda inputs: layer.forward(inputs if many else inputs[0], training)  # noqa: E731
    y = run(devs)
    dy_host = np.random.default_rng(seed).standard_normal(tuple(y.shape)).astype(p.dtype)
    dx = layer.backward(dev(dy_host))
    dxs = dx if many else [dx]
    slots = layer.named_parameters()  # a block's own and its children's, by path
    grads = {path: be.to_numpy(owner.grads[key]) for path, owner, key in slots}
    name = type(layer).__name__
    for i, host in enumerate(hosts):
        if host.dtype.kind in "iu":
            continue

        def objective(x_: np.ndarray, i: int = i) -> float:
            inputs = [dev(x_) if j == i else d for j, d in enumerate(devs)]
            return float(np.sum(be.to_numpy(run(inputs)) * dy_host))

        _compare(f"{name} input{f' {i}' if many else ''}", be.to_numpy(dxs[i]),
                 numerical_gradient(objective, host.copy(), p.eps), p)
    for path, owner, key in slots:
        w = be.to_numpy(owner.params[key]).astype(p.dtype)

        def objective_w(w_: np.ndarray, owner: Layer = owner, key: str = key) -> float:
            owner.params[key] = dev(w_)
            return float(np.sum(be.to_numpy(run(devs)) * dy_host))

        numeric = numerical_gradient(objective_w, w.copy(), p.eps)
        owner.params[key] = dev(w)
        _compare(f"{name} {path}", grads[path], numeric, p)


def gradcheck_loss(loss: Loss, y_pred: Any, y_true: Any) -> None:
    """Check ``loss.backward()`` against finite differences of ``loss(y_pred, y_true)``.

    Example:
        >>> portnn.gradcheck_loss(portnn.MSE(), np.random.rand(4, 2), np.random.rand(4, 2))
    """
    be = backend_of(y_pred) if not isinstance(y_pred, np.ndarray) else get_backend()
    with be.activate():
        _gradcheck_loss(loss, y_pred, y_true, be)


def _gradcheck_loss(loss: Loss, y_pred: Any, y_true: Any, be: Backend) -> None:
    p = _precision(be)
    pred = (y_pred if isinstance(y_pred, np.ndarray) else be.to_numpy(y_pred)).astype(p.dtype)
    true = y_true if isinstance(y_true, np.ndarray) else be.to_numpy(y_true)
    if true.dtype.kind == "f":
        true = true.astype(p.dtype)
    t = be.asarray(true)
    loss(be.asarray(pred, dtype=p.dtype), t)
    analytic = be.to_numpy(loss.backward())
    numeric = numerical_gradient(
        lambda a: float(loss(be.asarray(a, dtype=p.dtype), t)), pred.copy(), p.eps)
    _compare(type(loss).__name__, analytic, numeric, p)

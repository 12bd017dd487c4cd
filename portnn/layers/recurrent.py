"""Recurrent layers over batch-first sequences ``(N, T, F)``: SimpleRNN, LSTM, GRU.

PyTorch's weight layout, gate order and formulas (``torch.nn.RNN``/``LSTM``/``GRU`` with
``batch_first=True``, one layer). The input projection ``x @ weight_ih.T + bias_ih`` is one matrix
product for the whole sequence; the loop over time steps then adds ``h @ weight_hh.T + bias_hh``.
``backward`` runs back through time: this is the one place a layer keeps a *list* of per-step
caches (``self._steps``, a new list per ``forward``, so a shared or repeated layer stays correct).

A cell is two methods: ``_step(p, hh, state) -> (h, state, cache)`` from the step's input
projection ``p`` and recurrent projection ``hh``, and ``_step_back(dh, dstate, cache) -> (dp, dhh,
dh_direct, dstate)``: the gradients of ``p`` and ``hh``, the part of the previous ``h``'s gradient
that does not go through ``hh``, and the gradient of the previous cell state.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _checks
from ..backends import array_namespace, init_rng
from ._base import Layer
from .conv import device_of


def _sigmoid(xp: Any, z: Any) -> Any:
    return 1.0 / (1.0 + xp.exp(-z))


class _Recurrent(Layer):
    gates = 1  # blocks of hidden_size in weight_ih's rows

    def __init__(self, input_size: int, hidden_size: int, return_sequences: bool = False,
                 dtype: str = "float32") -> None:
        super().__init__()
        self.name = name = f"{type(self).__name__}({input_size!r}, {hidden_size!r})"
        self.input_size = _checks.integer(name, "input_size", input_size)
        self.hidden_size = _checks.integer(name, "hidden_size", hidden_size)
        self.return_sequences = _checks.boolean(name, "return_sequences", return_sequences)
        self.dtype = _checks.float_dtype(name, dtype)
        rows, limit = self.gates * hidden_size, 1 / math.sqrt(hidden_size)  # PyTorch's U(-k, k)
        for key, shape in (("weight_ih", (rows, input_size)), ("weight_hh", (rows, hidden_size)),
                           ("bias_ih", (rows,)), ("bias_hh", (rows,))):
            self.add_param(key, init_rng().uniform(-limit, limit, size=shape).astype(np.float32))

    def _initial(self, h: Any) -> Any:
        """The cell state besides ``h`` at the first step (an LSTM's ``c``), or ``None``."""
        return None

    def forward(self, x: Any, training: bool = False) -> Any:
        if x.ndim != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"{self.name} expects sequences of shape (batch, time, {self.input_size}), "
                             f"got {tuple(x.shape)}")
        xp, (n, t, f) = array_namespace(x), x.shape
        w_ih, w_hh, b_hh = self.params["weight_ih"], self.params["weight_hh"], self.params["bias_hh"]
        proj = xp.reshape(xp.reshape(x, (n * t, f)) @ w_ih.T + self.params["bias_ih"], (n, t, -1))
        h = xp.zeros((n, self.hidden_size), dtype=x.dtype, device=device_of(x))
        state = self._initial(h)
        self.x, self._steps, outputs = x, [], []
        for step in range(t):
            previous = h
            h, state, cache = self._step(proj[:, step, :], previous @ w_hh.T + b_hh, state)
            self._steps.append((previous, cache))
            outputs.append(h)
        return xp.stack(outputs, axis=1) if self.return_sequences else h

    def backward(self, dy: Any) -> Any:
        xp, (n, t, f) = array_namespace(dy), self.x.shape
        w_hh = self.params["weight_hh"]
        dh = dstate = dw_hh = db_hh = None
        dps = [None] * t
        for step in reversed(range(t)):
            given = dy[:, step, :] if self.return_sequences else (dy if step == t - 1 else None)
            dh = given if dh is None else (dh if given is None else dh + given)
            previous, cache = self._steps[step]
            dps[step], dhh, direct, dstate = self._step_back(dh, dstate, cache)
            dw_hh = _add(dw_hh, dhh.T @ previous)
            db_hh = _add(db_hh, xp.sum(dhh, axis=0))
            dh = dhh @ w_hh if direct is None else direct + dhh @ w_hh
        dproj = xp.reshape(xp.stack(dps, axis=1), (n * t, -1))
        self.grads["weight_ih"] = dproj.T @ xp.reshape(self.x, (n * t, f))
        self.grads["bias_ih"] = xp.sum(dproj, axis=0)
        self.grads["weight_hh"], self.grads["bias_hh"] = dw_hh, db_hh
        return xp.reshape(dproj @ self.params["weight_ih"], (n, t, f))


def _add(total: Any, value: Any) -> Any:
    return value if total is None else total + value


class SimpleRNN(_Recurrent):
    """``h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``, as ``torch.nn.RNN``.

    ``return_sequences=False`` returns the last ``h`` ``(N, H)``; ``True`` every one ``(N, T, H)``.

    Example:
        >>> portnn.SimpleRNN(3, 5).forward(np.ones((2, 7, 3), np.float32)).shape
        (2, 5)
    """

    def _step(self, p: Any, hh: Any, state: Any) -> tuple[Any, Any, Any]:
        h = array_namespace(p).tanh(p + hh)
        return h, None, h

    def _step_back(self, dh: Any, dstate: Any, h: Any) -> tuple[Any, Any, Any, Any]:
        dpre = dh * (1 - h * h)
        return dpre, dpre, None, None


class LSTM(_Recurrent):
    """Long short-term memory, as ``torch.nn.LSTM``: gates ``i, f, g, o`` in that order in
    ``weight_ih`` ``(4H, F)``, ``c_t = f c_{t-1} + i g``, ``h_t = o tanh(c_t)``; zero initial states.

    Example:
        >>> portnn.LSTM(3, 5, return_sequences=True).forward(np.ones((2, 7, 3), np.float32)).shape
        (2, 7, 5)
    """

    gates = 4

    def _initial(self, h: Any) -> Any:
        return array_namespace(h).zeros_like(h)

    def _step(self, p: Any, hh: Any, c: Any) -> tuple[Any, Any, Any]:
        xp, size, pre = array_namespace(p), self.hidden_size, p + hh
        i, f = _sigmoid(xp, pre[:, :size]), _sigmoid(xp, pre[:, size:2 * size])
        g, o = xp.tanh(pre[:, 2 * size:3 * size]), _sigmoid(xp, pre[:, 3 * size:])
        new_c = f * c + i * g
        tanh_c = xp.tanh(new_c)
        return o * tanh_c, new_c, (i, f, g, o, c, tanh_c)

    def _step_back(self, dh: Any, dc: Any, cache: Any) -> tuple[Any, Any, Any, Any]:
        i, f, g, o, c, tanh_c = cache
        dc = dh * o * (1 - tanh_c * tanh_c) if dc is None else dc + dh * o * (1 - tanh_c * tanh_c)
        dpre = array_namespace(dh).concat([dc * g * i * (1 - i), dc * c * f * (1 - f), dc * i * (1 - g * g),
                                           dh * tanh_c * o * (1 - o)], axis=1)
        return dpre, dpre, None, dc * f


class GRU(_Recurrent):
    """Gated recurrent unit, as ``torch.nn.GRU``: gates ``r, z, n`` in that order,
    ``n = tanh(p_n + r (h W_hn^T + b_hn))``, ``h_t = (1 - z) n + z h_{t-1}``.

    Example:
        >>> portnn.GRU(3, 5).forward(np.ones((2, 7, 3), np.float32)).shape
        (2, 5)
    """

    gates = 3

    def _initial(self, h: Any) -> Any:
        return h  # the previous h, which the update gate mixes in

    def _step(self, p: Any, hh: Any, previous: Any) -> tuple[Any, Any, Any]:
        xp, size = array_namespace(p), self.hidden_size
        r = _sigmoid(xp, p[:, :size] + hh[:, :size])
        z = _sigmoid(xp, p[:, size:2 * size] + hh[:, size:2 * size])
        hh_n = hh[:, 2 * size:]
        n = xp.tanh(p[:, 2 * size:] + r * hh_n)
        h = (1 - z) * n + z * previous
        return h, h, (r, z, n, hh_n, previous)

    def _step_back(self, dh: Any, dstate: Any, cache: Any) -> tuple[Any, Any, Any, Any]:
        xp, (r, z, n, hh_n, previous) = array_namespace(dh), cache
        dn = dh * (1 - z) * (1 - n * n)
        dr = dn * hh_n * r * (1 - r)
        dz = dh * (previous - n) * z * (1 - z)
        dp = xp.concat([dr, dz, dn], axis=1)
        dhh = xp.concat([dr, dz, dn * r], axis=1)
        return dp, dhh, dh * z, None

"""Optimizers: one shared ``step``, one formula each, written once over lists of arrays.

A formula gets ``ops``, multi-tensor operations named as torch's ``_foreach_*``
(``mul_``, ``add_``, ``lerp_``, ...; :func:`portnn.backends._fast.foreach`): on
torch its own, one kernel launch per call for all parameters on a GPU; elsewhere
a loop of ``x *= a``, in place on NumPy and CuPy and a new array where arrays
are immutable. Every op returns the resulting list and the formula keeps that:
it goes back into the state dicts and, through :meth:`Optimizer.step`, into
``owner.params``, so nothing relies on an array changing behind its name.
Learning rates and bias corrections are Python floats: a step never reads
back from the device.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import operator
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .. import _checks
from ..backends import _fast as fast
from ..backends import array_namespace
from . import clipping

Schedule = Callable[[int], float]

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "RMSProp", "get"]


_NONES = itertools.repeat(None)


class Optimizer:
    """Base class. ``lr`` is a float or a schedule ``epoch -> lr``.

    ``weight_decay`` adds the L2 term ``weight_decay * w`` to every gradient
    (coupled, as in ``torch.optim.SGD``); ``AdamW`` overrides it with the
    decoupled form. ``t`` counts steps; ``epoch`` is the epoch a schedule sees,
    set by :meth:`Sequential.fit`, which continues from it on the next ``fit``
    (like a ``torch.optim.lr_scheduler``), so a loaded checkpoint resumes its schedule.

    Gradient clipping (Keras' arguments, PyTorch's formulas, at most one; see
    :mod:`portnn.clipping`), applied to the gradients before anything else in
    :meth:`step` and saved in checkpoints: ``clipnorm`` bounds each
    parameter's gradient norm, ``global_clipnorm`` the norm of all of them
    together (``torch.nn.utils.clip_grad_norm_``), ``clipvalue`` each element
    (``clip_grad_value_``). Every optimizer takes them as keyword arguments.

    A subclass names its per-parameter state in ``slots`` and writes
    :meth:`update`, its formula.
    """

    decoupled = False
    slots: tuple[str, ...] = ()

    def __init__(self, lr: float | Schedule = 0.01, weight_decay: float = 0.0, *,
                 clipnorm: float | None = None, global_clipnorm: float | None = None,
                 clipvalue: float | None = None) -> None:
        owner = type(self).__name__
        self.lr = lr if callable(lr) else _checks.positive(owner, "lr", lr)
        self.weight_decay = _checks.nonnegative(owner, "weight_decay", weight_decay)
        clipping.check(owner, clipnorm, global_clipnorm, clipvalue)
        self.clipnorm, self.global_clipnorm, self.clipvalue = clipnorm, global_clipnorm, clipvalue
        self.epoch = 0
        self.t = 0
        self.state: dict[str, dict[str, Any]] = {}
        self._slots: Any = None  # the last step()'s argument, and its paths
        self._traced_lr: Any = None

    @property
    def current_lr(self) -> float:
        """The learning rate for the current epoch (a traced value inside a compiled step)."""
        if self._traced_lr is not None:
            return self._traced_lr
        return float(self.lr(self.epoch)) if callable(self.lr) else float(self.lr)

    @contextlib.contextmanager
    def traced(self, t: Any, lr: Any) -> Iterator[None]:
        """Step count ``t`` (before the step) and learning rate ``lr`` as a compiled step's traced
        values inside the block, so that neither is frozen into the program; both are put back after.
        """
        saved = self.t
        self.t, self._traced_lr = t, lr
        try:
            yield
        finally:
            self.t, self._traced_lr = saved, None

    def step(self, layers: Iterable[Any]) -> None:
        """One update of every parameter from its stored gradient.

        ``layers``: anything with ``params`` and ``grads`` dicts (state keyed
        ``"<position>.<key>"``, as in a :class:`~portnn.Sequential`), or the
        ``(path, owner, key)`` triples of ``model.named_parameters()``, which is
        what models pass. Each ``owner.grads[key]`` goes in and the new value is
        written back into ``owner.params[key]``: the dicts are the source of
        truth (on NumPy, CuPy and torch the same arrays, updated in place; new
        ones where arrays are immutable).
        """
        if layers is not self._slots:  # a fit passes the same list every step: its paths are kept
            self._slots = layers
            slots = layers if isinstance(layers, list) and layers and isinstance(layers[0], tuple) else [
                (f"{i}.{key}", layer, key) for i, layer in enumerate(layers) for key in layer.params]
            self._paths = [path for path, _, _ in slots]
            self._slots_seen = slots
        slots = self._slots_seen
        params = [owner.params[key] for _, owner, key in slots]
        grads = [owner.grads.get(key) for _, owner, key in slots]
        if any(map(operator.is_, grads, _NONES)):  # `None in grads` would compare arrays
            path, owner, _ = slots[[g is None for g in grads].index(True)]
            raise ValueError(f"{type(self).__name__}.step: {path!r} ({type(owner).__name__}) has "
                             "no gradient; run backward before step")
        new = self.apply(self._paths, params, grads)
        if any(map(operator.is_not, new, params)):  # immutable arrays: new ones to keep
            for (_, owner, key), w in zip(slots, new, strict=True):
                owner.params.store(key, w)

    def apply(self, paths: list[str], params: list[Any], grads: list[Any]) -> list[Any]:
        """One update of every parameter from its gradient; returns the new parameters.

        ``paths`` name the parameters (``"0.weight"``, ``"block.conv1.bias"``) and key their
        state. On NumPy, CuPy and torch the arrays are updated in place and returned.
        """
        self.t += 1
        if not params:
            return params
        known, names = self.state, len(self.slots)
        states = [known.get(path) for path in paths]
        # Tested cheaply first: a per-sample step (XOR) costs 30 us, and this runs every step.
        if None in states or (names and min(map(len, states)) < names):
            fresh = [i for i, state in enumerate(states) if state is None or len(state) < names]
            self.init_state([paths[i] for i in fresh], [params[i] for i in fresh])
            states = [known[path] for path in paths]
        ops = fast.foreach(params[0])
        # Every (parameter, gradient) pair is gathered here: the transforms of all gradients go here.
        grads = clipping.clip_gradients(grads, self.clipnorm, self.global_clipnorm, self.clipvalue)
        if self.weight_decay and not self.decoupled:
            grads = clipping.weight_decay(ops, grads, params, self.weight_decay)
        return self.update(ops, params, grads, states, self.current_lr)

    def init_state(self, paths: list[str], params: list[Any]) -> None:
        """Create the state of parameters not stepped yet: zeros like each, one per name in ``slots``.

        :meth:`apply` calls it for paths it has no (or incomplete) state for; entries already
        there (a loaded checkpoint's) are kept.
        """
        for path, w in zip(paths, params, strict=True):
            state = self.state.setdefault(path, {})
            for name in self.slots:
                if name not in state:
                    state[name] = array_namespace(w).zeros_like(w)

    def update(self, ops: Any, params: list[Any], grads: list[Any], states: list[dict[str, Any]],
               lr: float) -> list[Any]:
        """The formula: every parameter's new value from its (clipped, decayed) gradient.

        ``ops`` are :func:`portnn.backends._fast.foreach`'s; each op returns its result, which
        the formula keeps (new state goes into ``states``). Returns the new parameters.
        """
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Constructor arguments for checkpoints (a schedule without ``config()`` saves its current lr)."""
        keep = {k: v for k, v in vars(self).items() if k not in ("state", "epoch", "t") and k[0] != "_"}
        if callable(self.lr):
            keep["lr"] = self.lr.config() if hasattr(self.lr, "config") else self.current_lr
        return keep


def _sqrt(value: Any) -> Any:
    return math.sqrt(value) if isinstance(value, float) else value**0.5


def _read(states: list[dict[str, Any]], name: str) -> list[Any]:
    return [state[name] for state in states]


def _keep(states: list[dict[str, Any]], name: str, arrays: list[Any]) -> list[Any]:
    for state, a in zip(states, arrays, strict=True):
        state[name] = a
    return arrays


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``.

    Example:
        >>> opt = portnn.SGD(lr=0.1, momentum=0.9, nesterov=True)
    """

    def __init__(self, lr: float | Schedule = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, **clip: float | None) -> None:
        super().__init__(lr, weight_decay, **clip)
        momentum = _checks.fraction("SGD", "momentum", momentum)
        if _checks.boolean("SGD", "nesterov", nesterov) and momentum <= 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.momentum, self.nesterov = momentum, nesterov

    @property
    def slots(self) -> tuple[str, ...]:
        return ("velocity",) if self.momentum else ()

    def update(self, ops: Any, params: list[Any], grads: list[Any], states: list[dict[str, Any]],
               lr: float) -> list[Any]:
        if self.momentum:
            # From zeros, the first step's m * 0 + g is g exactly: torch's clone of the gradient.
            velocity = _keep(states, "velocity", ops.add_(ops.mul_(_read(states, "velocity"),
                                                                   self.momentum), grads))
            grads = ops.add(grads, velocity, alpha=self.momentum) if self.nesterov else velocity
        return ops.add_(params, grads, alpha=-lr)


class Adam(Optimizer):
    """Adam (Kingma & Ba), as ``torch.optim.Adam``; L2 ``weight_decay`` is coupled.

    Example:
        >>> opt = portnn.Adam(lr=1e-3)
    """

    slots = ("m", "v")

    def __init__(self, lr: float | Schedule = 0.001, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, **clip: float | None) -> None:
        super().__init__(lr, weight_decay, **clip)
        self.betas, self.eps = _checks.betas(type(self).__name__, betas), _checks.positive(
            type(self).__name__, "eps", eps)

    def update(self, ops: Any, params: list[Any], grads: list[Any], states: list[dict[str, Any]],
               lr: float) -> list[Any]:
        b1, b2 = self.betas
        m = _keep(states, "m", ops.lerp_(_read(states, "m"), grads, 1 - b1))  # b1 m + (1 - b1) g
        v = _keep(states, "v", ops.addcmul_(ops.mul_(_read(states, "v"), b2), grads, grads, 1 - b2))
        if self.decoupled:
            params = ops.mul_(params, 1 - lr * self.weight_decay)
        # torch's order: the bias corrections as Python floats, sqrt(v) / sqrt(1 - b2^t) + eps
        # (traced values inside a compiled step, where t is one).
        denom = ops.add_(ops.div_(ops.sqrt(v), _sqrt(1 - b2**self.t)), self.eps)
        return ops.addcdiv_(params, m, denom, -lr / (1 - b1**self.t))


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``."""

    decoupled = True

    def __init__(self, lr: float | Schedule = 0.001, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01, **clip: float | None) -> None:
        super().__init__(lr, betas, eps, weight_decay, **clip)


class RMSProp(Optimizer):
    """RMSProp, as ``torch.optim.RMSprop`` (no momentum, not centered)."""

    slots = ("square_avg",)

    def __init__(self, lr: float | Schedule = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, **clip: float | None) -> None:
        super().__init__(lr, weight_decay, **clip)
        self.alpha = _checks.fraction("RMSProp", "alpha", alpha)
        self.eps = _checks.positive("RMSProp", "eps", eps)

    def update(self, ops: Any, params: list[Any], grads: list[Any], states: list[dict[str, Any]],
               lr: float) -> list[Any]:
        square_avg = ops.addcmul_(ops.mul_(_read(states, "square_avg"), self.alpha), grads, grads,
                                  1 - self.alpha)
        _keep(states, "square_avg", square_avg)
        return ops.addcdiv_(params, grads, ops.add_(ops.sqrt(square_avg), self.eps), -lr)


_BY_NAME = {c.__name__.lower(): c for c in (SGD, Adam, AdamW, RMSProp)}


def get(optimizer: str | Optimizer) -> Optimizer:
    """An optimizer by name (``"sgd"``, ``"adam"``, ...) with defaults, or passed through."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, type) and issubclass(optimizer, Optimizer):
        raise TypeError(f"optimizer must be an Optimizer instance or a name, got the class "
                        f"{optimizer.__name__}; write {optimizer.__name__}(lr=...)")
    if not isinstance(optimizer, str):
        raise TypeError(f"optimizer must be a name {sorted(_BY_NAME)} or an Optimizer, "
                        f"got {type(optimizer).__name__}")
    if optimizer.lower() not in _BY_NAME:
        raise ValueError(f"unknown optimizer {optimizer!r}; valid names: {sorted(_BY_NAME)}")
    return _BY_NAME[optimizer.lower()]()

"""Optimizers: one shared ``step`` loop, one per-parameter ``update`` each.

Where a backend has multi-tensor (foreach) operations, ``update_all`` does
the same update for every parameter in a few calls (a few kernel launches on a
GPU instead of several per parameter); ``update`` stays the portable reference
and the tests check the two equal.

Parameters and state are updated in place on the device; learning rates and
bias corrections are Python floats, so a step never reads back from the device.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from typing import Any

from . import _checks, clipping
from .backends import _fast as fast
from .backends import array_namespace

Schedule = Callable[[int], float]

__all__ = ["SGD", "Adam", "AdamW", "CosineDecay", "ExponentialDecay", "LRSchedule", "Optimizer",
           "RMSProp", "StepDecay", "get"]


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
    """

    decoupled = False

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

    @property
    def current_lr(self) -> float:
        """The learning rate for the current epoch."""
        return float(self.lr(self.epoch)) if callable(self.lr) else float(self.lr)

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
        slots = layers if isinstance(layers, list) and layers and isinstance(layers[0], tuple) else [
            (f"{i}.{key}", layer, key) for i, layer in enumerate(layers) for key in layer.params]
        params, grads = [], []
        for path, owner, key in slots:
            g = owner.grads.get(key)
            if g is None:
                raise ValueError(f"{type(self).__name__}.step: {path!r} ({type(owner).__name__}) has "
                                 "no gradient; run backward before step")
            params.append(owner.params[key])
            grads.append(g)
        new = self.apply([path for path, _, _ in slots], params, grads)
        for (_, owner, key), old, w in zip(slots, params, new, strict=True):
            if w is not old:
                owner.params.store(key, w)

    def apply(self, paths: list[str], params: list[Any], grads: list[Any]) -> list[Any]:
        """One update of every parameter from its gradient; returns the new parameters.

        ``paths`` name the parameters (``"0.weight"``, ``"block.conv1.bias"``) and key their
        state. On NumPy, CuPy and torch the arrays are updated in place and returned.
        """
        self.t += 1
        lr = self.current_lr
        known = self.state
        states = []
        for name in paths:
            state = known.get(name)  # not setdefault(name, {}): a new dict every step
            states.append(state if state is not None else known.setdefault(name, {}))
        # Every (parameter, gradient) pair is gathered here: transforms of all gradients go here.
        grads = clipping.clip_gradients(grads, self.clipnorm, self.global_clipnorm, self.clipvalue)
        each = fast.foreach(params[0]) if params else None
        if each is not None and self.update_all(each, params, grads, states, lr):
            return params
        decay, update = (0.0 if self.decoupled else self.weight_decay), self.update
        if decay:
            grads = [g + decay * w for w, g in zip(params, grads, strict=True)]
        for w, g, state in zip(params, grads, states, strict=True):
            update(w, g, state, lr)
        return params

    def update(self, w: Any, g: Any, state: dict[str, Any], lr: float) -> None:
        """The portable update of one parameter (the reference the fast path is tested against)."""
        raise NotImplementedError

    def update_all(self, each: Any, params: list[Any], grads: list[Any],
                   states: list[dict[str, Any]], lr: float) -> bool:
        """The same update for all parameters at once with ``each``, a backend's foreach
        operations (:func:`portnn.backends._fast.foreach`); ``False``: use :meth:`update`."""
        return False

    def _coupled_decay(self, each: Any, params: list[Any], grads: list[Any]) -> list[Any]:
        if self.weight_decay and not self.decoupled:
            return each.add(grads, params, alpha=self.weight_decay)
        return grads

    def config(self) -> dict[str, Any]:
        """Constructor arguments for checkpoints (a schedule without ``config()`` saves its current lr)."""
        keep = {k: v for k, v in vars(self).items() if k not in ("state", "epoch", "t")}
        if callable(self.lr):
            keep["lr"] = self.lr.config() if hasattr(self.lr, "config") else self.current_lr
        return keep


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

    def update(self, w: Any, g: Any, state: dict[str, Any], lr: float) -> None:
        if self.momentum:
            if "velocity" not in state:
                state["velocity"] = array_namespace(g).asarray(g, copy=True)
            else:
                buf = state["velocity"]
                buf *= self.momentum
                buf += g
            g = g + self.momentum * state["velocity"] if self.nesterov else state["velocity"]
        w -= lr * g

    def update_all(self, each: Any, params: list[Any], grads: list[Any],
                   states: list[dict[str, Any]], lr: float) -> bool:
        grads = self._coupled_decay(each, params, grads)
        if self.momentum:
            first = "velocity" not in states[0]
            if first:
                for g, state in zip(grads, states, strict=True):
                    state["velocity"] = array_namespace(g).asarray(g, copy=True)
            velocity = [state["velocity"] for state in states]
            if not first:
                each.mul_(velocity, self.momentum)
                each.add_(velocity, grads)
            grads = each.add(grads, velocity, alpha=self.momentum) if self.nesterov else velocity
        each.add_(params, grads, alpha=-lr)
        return True


class Adam(Optimizer):
    """Adam (Kingma & Ba), as ``torch.optim.Adam``; L2 ``weight_decay`` is coupled.

    Example:
        >>> opt = portnn.Adam(lr=1e-3)
    """

    def __init__(self, lr: float | Schedule = 0.001, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, **clip: float | None) -> None:
        super().__init__(lr, weight_decay, **clip)
        self.betas, self.eps = _checks.betas(type(self).__name__, betas), _checks.positive(
            type(self).__name__, "eps", eps)

    def update(self, w: Any, g: Any, state: dict[str, Any], lr: float) -> None:
        xp = array_namespace(w)
        b1, b2 = self.betas
        if not state:
            state["m"], state["v"] = xp.zeros_like(w), xp.zeros_like(w)
        m, v = state["m"], state["v"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * (g * g)
        if self.decoupled:
            w *= 1 - lr * self.weight_decay
        step = lr / (1 - b1**self.t)
        w -= step * m / (xp.sqrt(v) / math.sqrt(1 - b2**self.t) + self.eps)

    def update_all(self, each: Any, params: list[Any], grads: list[Any],
                   states: list[dict[str, Any]], lr: float) -> bool:
        b1, b2 = self.betas
        for w, state in zip(params, states, strict=True):
            if not state:
                xp = array_namespace(w)
                state["m"], state["v"] = xp.zeros_like(w), xp.zeros_like(w)
        grads = self._coupled_decay(each, params, grads)
        m, v = [state["m"] for state in states], [state["v"] for state in states]
        each.lerp_(m, grads, 1 - b1)  # m + (1 - b1) (g - m) = b1 m + (1 - b1) g
        each.mul_(v, b2)
        each.addcmul_(v, grads, grads, 1 - b2)
        if self.decoupled:
            each.mul_(params, 1 - lr * self.weight_decay)
        denom = each.sqrt(v)
        each.div_(denom, math.sqrt(1 - b2**self.t))
        each.add_(denom, self.eps)
        each.addcdiv_(params, m, denom, -lr / (1 - b1**self.t))
        return True


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``."""

    decoupled = True

    def __init__(self, lr: float | Schedule = 0.001, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01, **clip: float | None) -> None:
        super().__init__(lr, betas, eps, weight_decay, **clip)


class RMSProp(Optimizer):
    """RMSProp, as ``torch.optim.RMSprop`` (no momentum, not centered)."""

    def __init__(self, lr: float | Schedule = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, **clip: float | None) -> None:
        super().__init__(lr, weight_decay, **clip)
        self.alpha = _checks.fraction("RMSProp", "alpha", alpha)
        self.eps = _checks.positive("RMSProp", "eps", eps)

    def update(self, w: Any, g: Any, state: dict[str, Any], lr: float) -> None:
        xp = array_namespace(w)
        if not state:
            state["square_avg"] = xp.zeros_like(w)
        sq = state["square_avg"]
        sq *= self.alpha
        sq += (1 - self.alpha) * (g * g)
        w -= lr * g / (xp.sqrt(sq) + self.eps)

    def update_all(self, each: Any, params: list[Any], grads: list[Any],
                   states: list[dict[str, Any]], lr: float) -> bool:
        for w, state in zip(params, states, strict=True):
            if not state:
                state["square_avg"] = array_namespace(w).zeros_like(w)
        grads = self._coupled_decay(each, params, grads)
        sq = [state["square_avg"] for state in states]
        each.mul_(sq, self.alpha)
        each.addcmul_(sq, grads, grads, 1 - self.alpha)
        denom = each.sqrt(sq)
        each.add_(denom, self.eps)
        each.addcdiv_(params, grads, denom, -lr)
        return True


# --------------------------------------------------------------------------- schedules


class LRSchedule:
    """Base class of the learning-rate schedules: ``schedule(epoch) -> lr``."""

    def config(self) -> dict[str, Any]:
        """The constructor arguments plus the class name, for checkpoints."""
        names = list(inspect.signature(type(self).__init__).parameters)[1:]
        return {"schedule": type(self).__name__, **{name: getattr(self, name) for name in names}}


class StepDecay(LRSchedule):
    """``lr * gamma ** (epoch // step_size)``, as ``torch.optim.lr_scheduler.StepLR``.

    Example:
        >>> opt = portnn.SGD(portnn.StepDecay(0.1, step_size=10, gamma=0.5))
    """

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1) -> None:
        owner = type(self).__name__
        self.lr = _checks.positive(owner, "lr", lr)
        self.step_size = _checks.integer(owner, "step_size", step_size)
        self.gamma = _checks.positive(owner, "gamma", gamma)

    def __call__(self, epoch: int) -> float:
        return self.lr * self.gamma ** (epoch // self.step_size)


class ExponentialDecay(StepDecay):
    """``lr * gamma ** epoch``, as ``torch.optim.lr_scheduler.ExponentialLR``."""

    def __init__(self, lr: float, gamma: float) -> None:
        super().__init__(lr, 1, gamma)


class CosineDecay(LRSchedule):
    """Cosine annealing from ``lr`` to ``min_lr`` over ``epochs``, then ``min_lr``.

    Matches ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=epochs, eta_min=min_lr)``
    for ``epoch <= epochs`` (torch's closed form turns back up after that).
    """

    def __init__(self, lr: float, epochs: int, min_lr: float = 0.0) -> None:
        self.lr, self.epochs = _checks.positive("CosineDecay", "lr", lr), _checks.integer(
            "CosineDecay", "epochs", epochs)
        self.min_lr = _checks.nonnegative("CosineDecay", "min_lr", min_lr)

    def __call__(self, epoch: int) -> float:
        frac = min(epoch, self.epochs) / self.epochs
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * frac))


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

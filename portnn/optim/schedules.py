"""Learning-rate schedules: ``schedule(epoch) -> lr``, PyTorch's ``lr_scheduler`` formulas.

An optimizer's ``lr`` may be one; the optimizer calls it with its ``epoch``,
which :meth:`~portnn.Sequential.fit` sets before each epoch.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from .. import _checks

__all__ = ["CosineDecay", "ExponentialDecay", "LRSchedule", "StepDecay"]


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

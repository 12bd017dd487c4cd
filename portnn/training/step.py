"""One training step, and the single-process strategy the loop runs it with.

A strategy is how a fit is spread over processes. The loop and the step call
the same methods on every one; :class:`Local`'s are no-ops, so neither has a
branch for distribution (:class:`portnn.distributed.DataParallel` is the other).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends._communicators import Communicator

__all__ = ["LOCAL", "Local", "train_step"]


class Local:
    """The plan of a fit on one process: every step of data parallelism is a no-op.

    ``model.strategy`` is this outside a distributed fit.
    """

    comm = Communicator()

    def begin(self, n: int) -> None:
        """Before the first epoch of a fit on ``n`` samples."""

    def shared(self, order: np.ndarray | None) -> np.ndarray | None:
        """The epoch's permutation, the same on every rank."""
        return order

    def shard(self, start: int, stop: int, order: np.ndarray | None = None,
              weights: np.ndarray | None = None) -> tuple[int, int]:
        """This rank's part ``[lo, hi)`` of the batch ``[start, stop)``."""
        return start, stop

    def scale(self, dy: Any) -> Any:
        """The loss gradient as this rank's share of the global batch's."""
        return dy

    def per_step(self) -> dict[str, float]:
        """The host numbers this step's work reads, by attribute name (:meth:`scale`'s weight):
        a compiled step takes them as arguments and sets them as traced values while it traces."""
        return {}

    def reduce(self, model: Any) -> None:
        """Sum the gradients over the ranks."""

    def empty_step(self) -> None:
        """A rank without samples in a short last batch: zero gradients that still join the sum."""

    def end_epoch(self, sums: dict[str, Any]) -> dict[str, Any]:
        """The epoch's sums, added over the ranks."""
        return sums

    def evaluate(self, x: Any, y: Any, local: Any) -> dict[str, float]:
        """``local(x, y)``'s means, over all ranks' parts."""
        return local(x, y)

    def close(self) -> None:
        """After the fit."""


LOCAL = Local()


def train_step(model: Any, x: Any, y: Any, weight: Any = None,
               strategy: Local = LOCAL,
               slots: list[tuple[str, Any, str]] | None = None) -> tuple[Any, Any]:
    """One forward, backward and update on a batch on the device: ``(loss, output)``, nothing read back.

    ``strategy`` (data parallel) weights this rank's loss gradient by its share of
    the global batch and sums the gradients over the ranks before the update.
    ``slots``: ``model.named_parameters()``, when the caller has it already.
    """
    out = model.forward(x, training=True)
    loss = model.loss(out, y) if weight is None else model.loss(out, y, weight)
    model.backward_params(strategy.scale(model.loss.backward()))
    strategy.reduce(model)
    model.optimizer.step(model.named_parameters() if slots is None else slots)
    return loss, out

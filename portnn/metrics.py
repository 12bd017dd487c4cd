"""Training metrics, summed on the device per batch like the loss, read back once per epoch.

A metric is a function ``(y_pred, y_true, loss) -> 0-d device array``: the
*sum* over the batch of a per-sample value; ``fit`` adds the batch sums on
the device and divides by the number of samples after its one read-back per
epoch. :func:`confusion_matrix` works on host arrays after training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .backends import _fast as fast
from .backends import array_namespace, to_numpy
from .losses import Loss

__all__ = ["METRICS", "accuracy", "confusion_matrix", "get", "mae", "top5_accuracy"]

Metric = Callable[[Any, Any, Any], Any]


def accuracy(y_pred: Any, y_true: Any, loss: Any) -> Any:
    """Number correct, as the loss defines it (:meth:`portnn.losses.Loss.correct`)."""
    return loss.correct(y_pred, y_true)


def top5_accuracy(y_pred: Any, y_true: Any, loss: Any) -> Any:
    """Number of samples whose true class is among the 5 highest scores (fewer than 5 rank above it)."""
    xp = array_namespace(y_pred)
    labels = y_true if y_true.ndim == 1 else xp.argmax(y_true, axis=1)
    labels = xp.astype(labels, fast.index_dtype(labels))
    true_score = fast.take_along_axis(y_pred, xp.reshape(labels, (-1, 1)), axis=1)
    above = xp.sum(xp.astype(y_pred > true_score, fast.index_dtype(labels)), axis=1)
    return xp.sum(xp.astype(above < 5, y_pred.dtype))


def mae(y_pred: Any, y_true: Any, loss: Any) -> Any:
    """Sum over the batch of each sample's mean absolute error."""
    xp = array_namespace(y_pred)
    if tuple(y_pred.shape) != tuple(y_true.shape):
        raise ValueError(f"metric 'mae': y_pred has shape {tuple(y_pred.shape)} but y_true has "
                         f"{tuple(y_true.shape)}; mae needs targets of the output's shape")
    per_sample = 1
    for d in y_pred.shape[1:]:
        per_sample *= d
    diff = y_pred - xp.astype(y_true, y_pred.dtype, copy=False)
    return xp.sum(xp.abs(diff)) / per_sample


METRICS: dict[str, Metric] = {"accuracy": accuracy, "top5_accuracy": top5_accuracy, "mae": mae}


def get(names: Sequence[str] | None, loss: Any) -> dict[str, Metric]:
    """The metric functions for ``names``; ``None`` is ``["accuracy"]`` for a classification loss."""
    classifier = type(loss).correct is not Loss.correct
    if names is None:
        names = ["accuracy"] if classifier else []
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"metrics: unknown metrics {unknown}; valid: {sorted(METRICS)}")
    if "accuracy" in names and not classifier:
        raise ValueError(f"metric 'accuracy' needs a classification loss (CrossEntropy, "
                         f"BinaryCrossEntropy), not {type(loss).__name__}")
    return {name: METRICS[name] for name in dict.fromkeys(names)}


def host(a: Any) -> np.ndarray:
    """A host NumPy array from a device array of any backend, or from lists and NumPy arrays."""
    return np.asarray(a) if isinstance(a, (list, tuple, np.ndarray)) else to_numpy(a)


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """Counts ``m[i, j]`` of samples of true class ``i`` predicted as ``j``, on the host.

    ``y_true``: integer labels ``(N,)`` or one-hot ``(N, C)``; ``y_pred``: labels
    ``(N,)`` or scores/logits ``(N, C)`` (the arg-max is the prediction). Arrays
    of any backend are copied to the host.

    Example:
        >>> portnn.metrics.confusion_matrix(y_test, model.predict(x_test))
    """
    t, p = host(y_true), host(y_pred)
    t = t.argmax(axis=1) if t.ndim == 2 else t
    p = p.argmax(axis=1) if p.ndim == 2 else p
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"confusion_matrix: y_true {t.shape} and y_pred {p.shape} give different "
                         "numbers of labels")
    t, p = t.astype(np.int64), p.astype(np.int64)
    if num_classes is None:
        num_classes = int(max(t.max(initial=-1), p.max(initial=-1))) + 1
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= num_classes):
        raise ValueError(f"confusion_matrix: labels must lie in [0, {num_classes})")
    m = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(m, (t, p), 1)
    return m

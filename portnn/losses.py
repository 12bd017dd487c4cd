"""Losses: ``loss(y_pred, y_true)`` returns the batch mean as a 0-d array and
``loss.backward()`` returns ``d loss / d y_pred`` for that call."""

from __future__ import annotations

from typing import Any

import array_api_extra as xpx

from .backends import array_namespace

__all__ = ["BinaryCrossEntropy", "CrossEntropy", "Loss", "MSE", "get"]


class Loss:
    """Base class: subclasses implement ``forward`` and ``backward``."""

    def __call__(self, y_pred: Any, y_true: Any) -> Any:
        return self.forward(y_pred, y_true)

    def forward(self, y_pred: Any, y_true: Any) -> Any:
        raise NotImplementedError

    def backward(self) -> Any:
        raise NotImplementedError

    def correct(self, y_pred: Any, y_true: Any) -> Any | None:
        """Number of correct predictions as a 0-d device array (``None``: not a classifier)."""
        return None

    def config(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def _same_shape(self, y_pred: Any, y_true: Any) -> Any:
        if tuple(y_pred.shape) != tuple(y_true.shape):
            raise ValueError(
                f"{type(self).__name__}: y_pred has shape {tuple(y_pred.shape)} but y_true has "
                f"shape {tuple(y_true.shape)}; reshape y_true to match (e.g. y.reshape(-1, 1))"
            )
        if y_true.dtype == y_pred.dtype:
            return y_true
        return array_namespace(y_pred).astype(y_true, y_pred.dtype, copy=False)


class MSE(Loss):
    """Mean squared error over all elements, as ``torch.nn.functional.mse_loss``."""

    def forward(self, y_pred: Any, y_true: Any) -> Any:
        self._diff = y_pred - self._same_shape(y_pred, y_true)
        # sum / size, not mean: numpy's mean costs a per-sample step several microseconds more.
        return array_namespace(y_pred).sum(self._diff * self._diff) / _size(self._diff)

    def backward(self) -> Any:
        return (2.0 / _size(self._diff)) * self._diff


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy on probabilities, or on logits with ``from_logits=True``.

    Matches ``torch.nn.functional.binary_cross_entropy`` (logs clamped at -100)
    and ``binary_cross_entropy_with_logits``.
    """

    def __init__(self, from_logits: bool = False) -> None:
        if not isinstance(from_logits, bool):
            raise TypeError(f"BinaryCrossEntropy: from_logits must be True or False, got {from_logits!r}")
        self.from_logits = from_logits

    def forward(self, y_pred: Any, y_true: Any) -> Any:
        xp = array_namespace(y_pred)
        t = self._same_shape(y_pred, y_true)
        self._p, self._t = y_pred, t
        if self.from_logits:
            # max(z, 0) - z t + log(1 + exp(-|z|)) never overflows.
            z = y_pred
            return xp.mean(xp.clip(z, min=0.0) - z * t + xp.log1p(xp.exp(-xp.abs(z))))
        # Logs clamped at -100 as in PyTorch; the inner clip avoids log(0) warnings.
        log_p = xp.clip(xp.log(xp.clip(y_pred, min=1e-44)), min=-100.0)
        log_1p = xp.clip(xp.log(xp.clip(1.0 - y_pred, min=1e-44)), min=-100.0)
        return -xp.mean(t * log_p + (1.0 - t) * log_1p)

    def backward(self) -> Any:
        xp = array_namespace(self._p)
        p, t, n = self._p, self._t, _size(self._p)
        if self.from_logits:
            return (0.5 * xp.tanh(0.5 * p) + 0.5 - t) / n
        return (p - t) / (xp.clip((1.0 - p) * p, min=1e-12) * n)

    def correct(self, y_pred: Any, y_true: Any) -> Any:
        xp = array_namespace(y_pred)
        hit = (y_pred > (0.0 if self.from_logits else 0.5)) == (y_true > 0.5)
        return xp.sum(xp.astype(hit, y_pred.dtype))


class CrossEntropy(Loss):
    """Softmax cross-entropy from logits ``(batch, classes)``.

    ``y_true`` is integer class labels ``(batch,)`` or one-hot / probability
    targets ``(batch, classes)``; matches ``torch.nn.functional.cross_entropy``.
    """

    def forward(self, y_pred: Any, y_true: Any) -> Any:
        xp = array_namespace(y_pred)
        if y_pred.ndim != 2:
            raise ValueError("CrossEntropy expects logits of shape (batch, classes), "
                             f"got {tuple(y_pred.shape)}")
        t = self._targets(y_pred, y_true)
        shifted = y_pred - xp.max(y_pred, axis=1, keepdims=True)
        e = xp.exp(shifted)
        s = xp.sum(e, axis=1, keepdims=True)
        self._softmax, self._t = e / s, t
        log_p = shifted - xp.log(s)
        return -xp.sum(t * log_p) / y_pred.shape[0]

    def backward(self) -> Any:
        return (self._softmax - self._t) / self._t.shape[0]

    def correct(self, y_pred: Any, y_true: Any) -> Any:
        xp = array_namespace(y_pred)
        labels = y_true if y_true.ndim == 1 else xp.argmax(y_true, axis=1)
        hit = xp.argmax(y_pred, axis=1) == xp.astype(labels, xp.int64)
        return xp.sum(xp.astype(hit, y_pred.dtype))

    def _targets(self, y_pred: Any, y_true: Any) -> Any:
        xp = array_namespace(y_pred)
        n, classes = y_pred.shape
        if y_true.ndim == 1 and y_true.shape[0] == n:
            if xp.isdtype(y_true.dtype, "real floating"):
                y_true = xp.astype(y_true, xp.int64)
            return xpx.one_hot(y_true, classes, dtype=y_pred.dtype, xp=xp)
        return self._same_shape(y_pred, y_true)


def _size(x: Any) -> int:
    n = 1
    for d in x.shape:
        n *= d
    return n


_BY_NAME = {"mse": MSE, "binary_crossentropy": BinaryCrossEntropy, "crossentropy": CrossEntropy}


def get(loss: str | Loss) -> Loss:
    """A loss by name (``"mse"``, ``"binary_crossentropy"``, ``"crossentropy"``) or passed through."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, type) and issubclass(loss, Loss):
        raise TypeError(f"loss must be a Loss instance or a name, got the class {loss.__name__}; "
                        f"write {loss.__name__}()")
    if not isinstance(loss, str):
        raise TypeError(f"loss must be a name {sorted(_BY_NAME)} or a Loss, got {type(loss).__name__}")
    key = loss.lower().replace("_", "").replace("-", "")
    for name, cls in _BY_NAME.items():
        if name.replace("_", "") == key:
            return cls()
    raise ValueError(f"unknown loss {loss!r}; valid names: {sorted(_BY_NAME)}")

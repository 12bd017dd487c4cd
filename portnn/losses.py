"""Losses: ``loss(y_pred, y_true)`` returns the batch mean as a 0-d array and
``loss.backward()`` returns ``d loss / d y_pred`` for that call."""

from __future__ import annotations

import math
from typing import Any

from . import _checks
from .backends import _fast as fast
from .backends import activate_for, array_namespace

__all__ = ["BinaryCrossEntropy", "CrossEntropy", "Loss", "MSE", "get"]


class Loss:
    """Base class: subclasses implement ``forward`` and ``gradient`` (what ``backward`` returns).

    ``loss(y_pred, y_true, weight=w)`` with one weight per sample (a 1-D
    device array) gives the weighted mean ``sum(w_i * l_i) / sum(w_i)`` of the
    per-sample losses ``l_i`` (for MSE and BCE the mean over a sample's
    features): PyTorch's ``cross_entropy(weight=class_weights)`` when ``w_i`` is
    the weight of sample i's class. The weights must not sum to 0.
    """

    _scale: Any = None  # w_i * N / sum(w) of the last weighted call

    _y_pred: Any = None  # the last call's, whose device backward computes on

    def __call__(self, y_pred: Any, y_true: Any, weight: Any = None) -> Any:
        self._y_pred = y_pred
        self._scale = None if weight is None else _weight_scale(self, weight, y_pred)
        if fast._numpy(y_pred):  # no current device to set: spare a per-sample step the context
            return self.forward(y_pred, y_true)
        with activate_for(y_pred):  # CuPy computes on its current device: make it y_pred's
            return self.forward(y_pred, y_true)

    def _weigh(self, per_sample: Any) -> Any:
        """Per-sample (axis 0) losses or gradients times their sample's ``w_i * N / sum(w)``."""
        if self._scale is None:
            return per_sample
        xp = array_namespace(per_sample)
        return per_sample * xp.reshape(self._scale, (-1,) + (1,) * (per_sample.ndim - 1))

    def forward(self, y_pred: Any, y_true: Any) -> Any:
        raise NotImplementedError

    def backward(self) -> Any:
        """``d loss / d y_pred`` of the last call, computed on that call's device."""
        if fast._numpy(self._y_pred):
            return self.gradient()
        with activate_for(self._y_pred):
            return self.gradient()

    def gradient(self) -> Any:
        """What subclasses implement: the gradient of the last :meth:`forward`."""
        raise NotImplementedError

    def correct(self, y_pred: Any, y_true: Any) -> Any | None:
        """Number of correct predictions as a 0-d device array (``None``: not a classifier)."""
        return None

    def config(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def _same_shape(self, y_pred: Any, y_true: Any) -> Any:
        if y_pred.shape != y_true.shape:
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
        squared = self._diff * self._diff  # per-sample along axis 0: weight it here
        # sum / size, not mean: numpy's mean costs a per-sample step several microseconds more.
        return fast.sum(self._weigh(squared)) / _size(self._diff)

    def gradient(self) -> Any:
        return self._weigh((2.0 / _size(self._diff)) * self._diff)


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy on probabilities, or on logits with ``from_logits=True``.

    Matches ``torch.nn.functional.binary_cross_entropy`` (logs clamped at -100)
    and ``binary_cross_entropy_with_logits``.
    """

    def __init__(self, from_logits: bool = False) -> None:
        self.from_logits = _checks.boolean("BinaryCrossEntropy", "from_logits", from_logits)

    def forward(self, y_pred: Any, y_true: Any) -> Any:
        xp = array_namespace(y_pred)
        t = self._same_shape(y_pred, y_true)
        self._p, self._t = y_pred, t
        if self.from_logits:
            # max(z, 0) - z t + log(1 + exp(-|z|)) never overflows.
            z = y_pred
            elementwise = fast.clip(z, min=0.0) - z * t + xp.log1p(xp.exp(-xp.abs(z)))
        else:
            # Logs clamped at -100 as in PyTorch; the inner clip avoids log(0) warnings.
            log_p = fast.clip(xp.log(fast.clip(y_pred, min=1e-44)), min=-100.0)
            log_1p = fast.clip(xp.log(fast.clip(1.0 - y_pred, min=1e-44)), min=-100.0)
            elementwise = -(t * log_p + (1.0 - t) * log_1p)
        return xp.mean(self._weigh(elementwise))

    def gradient(self) -> Any:
        xp = array_namespace(self._p)
        p, t, n = self._p, self._t, _size(self._p)
        if self.from_logits:
            return self._weigh((0.5 * xp.tanh(0.5 * p) + 0.5 - t) / n)
        return self._weigh((p - t) / (fast.clip((1.0 - p) * p, min=1e-12) * n))

    def correct(self, y_pred: Any, y_true: Any) -> Any:
        xp = array_namespace(y_pred)
        hit = (y_pred > (0.0 if self.from_logits else 0.5)) == (y_true > 0.5)
        return xp.count_nonzero(hit)


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
        # log_softmax = shifted - log(sum(exp(shifted))); the max shift keeps exp finite.
        shifted = y_pred - fast.row_max(y_pred)
        e = xp.exp(shifted)
        s = xp.sum(e, axis=1, keepdims=True)
        self._e, self._s = e, s
        self._labels = self._t = None
        if y_true.ndim == 1:
            self._labels = labels = self._label_array(y_pred, y_true)
            # -log p[label] = log(s) - shifted[label]: one gather, no one-hot.
            picked = fast.take_along_axis(shifted, labels[:, None], axis=1)
            per_sample = xp.log(s[:, 0]) - picked[:, 0]
        else:
            self._t = t = self._same_shape(y_pred, y_true)
            per_sample = -xp.sum(t * (shifted - xp.log(s)), axis=1)
        return fast.mean(self._weigh(per_sample))

    def gradient(self) -> Any:
        n = self._e.shape[0]
        softmax = self._e / self._s
        if self._labels is None:
            return self._weigh((softmax - self._t) / n)
        xp = array_namespace(softmax)
        # softmax - one_hot(labels), the one-hot from a comparison with a cached arange.
        hit = self._labels[:, None] == fast.iota(softmax.shape[1], like=self._labels)
        return self._weigh((softmax - xp.astype(hit, softmax.dtype)) * (1.0 / n))

    def correct(self, y_pred: Any, y_true: Any) -> Any:
        """Number of rows whose largest logit is at the label (first maximum on ties)."""
        xp = array_namespace(y_pred)
        if y_true.ndim == 1:
            labels = self._label_array(y_pred, y_true)
        else:
            labels = fast.row_argmax(y_true)
        return xp.count_nonzero(fast.row_argmax(y_pred) == labels)

    def _label_array(self, y_pred: Any, y_true: Any) -> Any:
        xp = array_namespace(y_pred)
        if y_true.shape[0] != y_pred.shape[0]:
            raise ValueError(f"CrossEntropy: {y_pred.shape[0]} rows of logits but "
                             f"{y_true.shape[0]} labels")
        index = fast.index_dtype(y_true)
        if y_true.dtype == index:
            return y_true
        return xp.astype(y_true, index)


def _weight_scale(loss: Loss, weight: Any, y_pred: Any) -> Any:
    """``w * N / sum(w)`` on the device: the weighted mean is then the plain mean of scaled terms."""
    xp = array_namespace(y_pred)
    n = y_pred.shape[0]
    if weight.ndim != 1 or weight.shape[0] != n:
        raise ValueError(f"{type(loss).__name__}: weight must have shape ({n},) (one per sample), "
                         f"got {tuple(weight.shape)}")
    w = xp.astype(weight, y_pred.dtype, copy=False)
    return w * (n / xp.sum(w))


def _size(x: Any) -> int:
    return math.prod(x.shape)


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

"""Batch normalisation over the channel axis of (N, C) or (N, C, H, W) inputs."""

from __future__ import annotations

from typing import Any

from .. import _checks
from ..backends import array_namespace
from ..initializers import ones, zeros
from ._base import Layer


class BatchNorm(Layer):
    """Normalise each channel by its batch statistics, then scale by ``weight`` and shift by ``bias``.

    As ``torch.nn.BatchNorm1d/2d``: the biased batch variance normalises, the
    unbiased one feeds ``running_var``; ``training=False`` uses the running
    estimates (buffers ``running_mean``, ``running_var``).

    In data-parallel training each rank normalises by its own slice of the
    batch; ``sync=True`` uses the statistics of the whole global batch (as
    ``torch.nn.SyncBatchNorm``), at the cost of three small allreduces and one
    host read per step, so N ranks then train exactly as one process.

    Example:
        >>> bn = portnn.BatchNorm(16)
        >>> bn.forward(np.ones((8, 16, 7, 7), np.float32), training=True).shape
        (8, 16, 7, 7)
    """

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5,
                 dtype: str = "float32", sync: bool = False) -> None:
        super().__init__()
        self.name = name = f"BatchNorm({num_features!r})"
        self.num_features = _checks.integer(name, "num_features", num_features)
        self.momentum = _checks.fraction(name, "momentum", momentum, closed=True)
        self.eps, self.dtype = _checks.positive(name, "eps", eps), _checks.float_dtype(name, dtype)
        self.sync = _checks.boolean(name, "sync", sync)
        # Sum over the ranks, set by portnn.distributed while a data-parallel fit runs.
        self.allreduce: Any = None
        self.add_param("weight", ones((num_features,)))
        self.add_param("bias", zeros((num_features,)))
        self.add_param("running_mean", zeros((num_features,)), buffer=True)
        self.add_param("running_var", ones((num_features,)), buffer=True)

    def forward(self, x: Any, training: bool = False) -> Any:
        xp = array_namespace(x)
        if x.ndim not in (2, 4) or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm({self.num_features}) expects input of shape (batch, "
                             f"{self.num_features}) or (batch, {self.num_features}, height, width), "
                             f"got {tuple(x.shape)}")
        self._axes = (0,) if x.ndim == 2 else (0, 2, 3)
        shape = (1, self.num_features) + (1,) * (x.ndim - 2)
        count = x.shape[0] * (1 if x.ndim == 2 else x.shape[2] * x.shape[3])
        self._training = training
        if training:
            # Synchronised, every rank holds a sample (fit checks) and there are >= 2 ranks.
            if count < 2 and self.allreduce is None:
                raise ValueError(f"BatchNorm({self.num_features}): training needs more than one "
                                 f"value per channel, got input of shape {tuple(x.shape)}")
            mean, centered, var, count = self._batch_stats(xp, x, count)
            self._count = count
            m = self.momentum
            self.buffers["running_mean"] = ((1 - m) * self.buffers["running_mean"]
                                            + m * xp.reshape(mean, (-1,)))
            self.buffers["running_var"] = ((1 - m) * self.buffers["running_var"]
                                           + (m * count / (count - 1)) * xp.reshape(var, (-1,)))
        else:
            centered = x - xp.reshape(self.buffers["running_mean"], shape)
            var = xp.reshape(self.buffers["running_var"], shape)
        self._inv_std = 1.0 / xp.sqrt(var + self.eps)
        self._xhat = centered * self._inv_std
        return self._xhat * xp.reshape(self.params["weight"], shape) + xp.reshape(self.params["bias"], shape)

    def _batch_stats(self, xp: Any, x: Any, count: int) -> tuple[Any, Any, Any, Any]:
        """Mean, centred input, biased variance and count over the batch (every rank's when
        synchronised: then the count is a 0-d device array, never read back)."""
        if self.allreduce is None:
            mean = xp.mean(x, axis=self._axes, keepdims=True)
            centered = x - mean
            return mean, centered, xp.mean(centered * centered, axis=self._axes, keepdims=True), count
        shape = (1, self.num_features) + (1,) * (x.ndim - 2)
        local = xp.sum(x, axis=self._axes)
        sums = self.allreduce(xp.concat([local, xp.ones_like(local[:1]) * count]))
        count = sums[-1]
        mean = xp.reshape(sums[:-1], shape) / count
        centered = x - mean
        var = self.allreduce(xp.sum(centered * centered, axis=self._axes))
        return mean, centered, xp.reshape(var, shape) / count, count

    def backward(self, dy: Any) -> Any:
        xp = array_namespace(dy)
        axes, xhat = self._axes, self._xhat
        self.grads["weight"] = xp.sum(dy * xhat, axis=axes)
        self.grads["bias"] = xp.sum(dy, axis=axes)
        dxhat = dy * xp.reshape(self.params["weight"], self._inv_std.shape)
        if not self._training:
            return dxhat * self._inv_std
        # d/dx of (x - mean) / std with mean and std taken over the same batch.
        if self.allreduce is None:
            return self._inv_std * (dxhat - xp.mean(dxhat, axis=axes, keepdims=True)
                                    - xhat * xp.mean(dxhat * xhat, axis=axes, keepdims=True))
        c = self.num_features
        sums = self.allreduce(xp.concat([xp.sum(dxhat, axis=axes), xp.sum(dxhat * xhat, axis=axes)]))
        shape = self._inv_std.shape
        return self._inv_std * (dxhat - xp.reshape(sums[:c], shape) / self._count
                                - xhat * xp.reshape(sums[c:], shape) / self._count)


class LayerNorm(Layer):
    """Normalise each sample over its last axes, then scale by ``weight`` and shift by ``bias``.

    As ``torch.nn.LayerNorm(normalized_shape)``: the mean and biased variance over the trailing
    ``len(normalized_shape)`` axes, whose shape must be ``normalized_shape``; ``weight`` and
    ``bias`` have that shape. The same in training and inference (no running statistics).

    Example:
        >>> portnn.LayerNorm(8).forward(np.ones((2, 5, 8), np.float32)).shape
        (2, 5, 8)
    """

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5,
                 dtype: str = "float32") -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.name = name = f"LayerNorm({normalized_shape!r})"
        if not shape:
            raise ValueError(f"{name}: normalized_shape must name at least one axis, e.g. LayerNorm(64)")
        self.normalized_shape = tuple(_checks.integer(name, "normalized_shape", n) for n in shape)
        self.eps, self.dtype = _checks.positive(name, "eps", eps), _checks.float_dtype(name, dtype)
        self.add_param("weight", ones(self.normalized_shape))
        self.add_param("bias", zeros(self.normalized_shape))

    def forward(self, x: Any, training: bool = False) -> Any:
        xp, k = array_namespace(x), len(self.normalized_shape)
        if x.ndim <= k or tuple(x.shape[-k:]) != self.normalized_shape:
            raise ValueError(f"{self.name} expects input of shape (batch, ..., "
                             f"{', '.join(map(str, self.normalized_shape))}), got {tuple(x.shape)}")
        self._axes = tuple(range(x.ndim - k, x.ndim))
        mean = xp.mean(x, axis=self._axes, keepdims=True)
        centered = x - mean
        var = xp.mean(centered * centered, axis=self._axes, keepdims=True)
        self._inv = 1.0 / xp.sqrt(var + self.eps)
        self._xhat = centered * self._inv
        return self._xhat * self.params["weight"] + self.params["bias"]

    def backward(self, dy: Any) -> Any:
        xp, axes, xhat = array_namespace(dy), self._axes, self._xhat
        batch = tuple(range(dy.ndim - len(axes)))
        self.grads["weight"] = xp.sum(dy * xhat, axis=batch)
        self.grads["bias"] = xp.sum(dy, axis=batch)
        g = dy * self.params["weight"]
        # d xhat -> dx: (g - mean(g) - xhat * mean(g * xhat)) / std, means over the normalised axes.
        return (g - xp.mean(g, axis=axes, keepdims=True)
                - xhat * xp.mean(g * xhat, axis=axes, keepdims=True)) * self._inv

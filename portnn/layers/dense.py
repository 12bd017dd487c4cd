"""Fully connected layer."""

from __future__ import annotations

from typing import Any

from .. import _checks, initializers
from ..backends import _fast as fast
from ._base import Layer


class Dense(Layer):
    """``y = x @ weight + bias`` with ``weight`` of shape ``(in_features, out_features)``.

    Example:
        >>> layer = portnn.Dense(2, 3)
        >>> layer.forward(np.ones((4, 2), np.float32)).shape
        (4, 3)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 init: str | initializers.Initializer = "glorot_uniform",
                 dtype: str = "float32") -> None:
        super().__init__()
        self.name = name = f"Dense({in_features!r}, {out_features!r})"
        in_features = _checks.integer(name, "in_features", in_features)
        out_features = _checks.integer(name, "out_features", out_features)
        self.in_features, self.out_features = in_features, out_features
        self.bias = _checks.boolean(name, "bias", bias)
        self.init, self.dtype = init, _checks.float_dtype(name, dtype)
        shape = (in_features, out_features)
        self.add_param("weight", initializers.get(init)(shape, in_features, out_features))
        if bias:
            self.add_param("bias", initializers.zeros((out_features,)))

    def forward(self, x: Any, training: bool = False) -> Any:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"Dense({self.in_features}, {self.out_features}) expects input of shape "
                f"(batch, {self.in_features}), got {tuple(x.shape)}"
            )
        self.x = x
        y = x @ self.params["weight"]
        if self.bias:
            y += self.params["bias"]  # in place: y is new, and NumPy saves an allocation and a pass
        return y

    def backward(self, dy: Any) -> Any:
        self.backward_params(dy)
        return dy @ self.params["weight"].T

    def backward_params(self, dy: Any) -> None:
        # Skipping dx saves a third of a first Dense layer's backward work.
        self.grads["weight"] = self.x.T @ dy
        if self.bias:
            self.grads["bias"] = fast.sum(dy, axis=0)

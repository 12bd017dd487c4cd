"""Embedding: integer indices to rows of a trained table."""

from __future__ import annotations

from typing import Any

from .. import _checks, initializers
from ..backends import _fast as fast
from ..backends import array_namespace
from . import symbolic
from ._base import Layer


class Embedding(Layer):
    """Each index ``i`` of an integer input ``(N, T)`` becomes row ``weight[i]``: output ``(N, T, D)``.

    As ``torch.nn.Embedding``: ``weight`` has shape ``(num_embeddings, embedding_dim)``, drawn from
    N(0, 1). Its gradient sums the rows of repeated indices (one scatter-add). The input has no
    gradient (``backward`` returns ``None``), so an Embedding comes first in a model.

    Indices outside ``[0, num_embeddings)`` are a ``ValueError`` naming the layer, found where the
    data comes in: ``fit``/``predict``/``evaluate`` check them once per call, ``layer(x)`` per call;
    ``forward`` itself reads nothing back (it runs inside training steps).

    Example:
        >>> portnn.Embedding(100, 8).forward(np.array([[1, 2, 3]])).shape
        (1, 3, 8)
    """

    input_kind = "indices"

    def __init__(self, num_embeddings: int, embedding_dim: int,
                 init: str | initializers.Initializer = "normal", dtype: str = "float32") -> None:
        super().__init__()
        self.name = name = f"Embedding({num_embeddings!r}, {embedding_dim!r})"
        self.num_embeddings = _checks.integer(name, "num_embeddings", num_embeddings)
        self.embedding_dim = _checks.integer(name, "embedding_dim", embedding_dim)
        self.init, self.dtype = init, _checks.float_dtype(name, dtype)
        shape = (num_embeddings, embedding_dim)
        self.add_param("weight", initializers.get(init)(shape, num_embeddings, embedding_dim))

    def __call__(self, x: Any, training: bool = False) -> Any:
        from ..training import inputs

        if symbolic.is_symbolic(x):  # building a graph: nothing to check yet
            return super().__call__(x, training)
        return super().__call__(inputs.indices(self.backend, x, self, "x"), training)

    def forward(self, x: Any, training: bool = False) -> Any:
        xp = array_namespace(x)
        if xp.isdtype(x.dtype, "real floating"):
            raise TypeError(f"{self.name} expects integer indices, got an array of dtype {x.dtype}")
        self._rows = xp.reshape(x, (-1,))
        self._shape = tuple(x.shape)
        return xp.reshape(fast.take(self.params["weight"], self._rows), (*self._shape, self.embedding_dim))

    def backward(self, dy: Any) -> None:
        flat = array_namespace(dy).reshape(dy, (-1, self.embedding_dim))
        self.grads["weight"] = fast.scatter_add_rows(self.num_embeddings, self._rows, flat)
        return None

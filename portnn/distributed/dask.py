"""Inference over a Dask array: the model mapped over row chunks, loaded once per worker process."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..backends import to_numpy
from ..training import checkpoints as _checkpoint

__all__ = ["predict_dask"]

_models: dict[tuple[str, float, str | None, str | None], Any] = {}


def _cached_model(path: str, backend: str | None, device: str | None) -> Any:
    key = (path, os.path.getmtime(path), backend, device)
    if key not in _models:
        _models[key] = _checkpoint.model_class(path).load(path, backend=backend, device=device)
    return _models[key]


def _predict_block(block: np.ndarray, path: str, backend: str | None, device: str | None,
                   batch_size: int | None) -> np.ndarray:
    model = _cached_model(path, backend, device)
    return to_numpy(model.predict(block, batch_size=batch_size))


def predict_dask(checkpoint_path: str | os.PathLike[str], array: Any, batch_size: int | None = 1024,
                 backend: str | None = None, device: str | None = None) -> Any:
    """Predictions for a Dask array of samples (rows), computed chunk by chunk where the chunks live.

    Each worker process loads the checkpoint once (cached by path and
    modification time) and predicts every row chunk it holds, ``batch_size``
    rows at a time, so the data never has to fit in one machine's memory.

    Returns:
        A lazy Dask array of NumPy outputs with the input's row chunks.

    Example:
        >>> x = dask.array.from_zarr("images.zarr")            # (10_000_000, 784)
        >>> y = portnn.distributed.predict_dask("mnist.npz", x).argmax(axis=1).compute()
    """
    import dask.array as da

    path = os.path.abspath(os.fspath(checkpoint_path))
    if not os.path.exists(path):
        raise FileNotFoundError(f"predict_dask: no checkpoint at {path}")
    if array.ndim < 1:
        raise ValueError("predict_dask: the array needs a leading sample axis")
    array = array.rechunk({axis: -1 for axis in range(1, array.ndim)})  # whole samples per chunk
    probe = _predict_block(np.zeros((1, *array.shape[1:]), array.dtype), path, backend, device, None)
    return da.map_blocks(_predict_block, array, path, backend, device, batch_size, dtype=probe.dtype,
                         drop_axis=list(range(1, array.ndim)), new_axis=list(range(1, probe.ndim)),
                         chunks=(array.chunks[0], *((d,) for d in probe.shape[1:])), meta=probe[:0])

"""``model.summary()``: each layer's output shape and parameter count, and the totals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["summary"]


def summary(model: Any, input_shape: Sequence[int] | None = None) -> str:
    """The summary table of ``model`` as a string (see :meth:`portnn.Sequential.summary`).

    Output shapes come from one forward pass of a single zero sample on the
    model's backend (``training=False``: running statistics are not touched).
    Trainable values are ``layer.params``; non-trainable ones are
    ``layer.buffers`` (BatchNorm's running mean and variance).
    """
    shape = tuple(input_shape) if input_shape is not None else model.input_shape
    if shape is None:
        raise ValueError("Sequential.summary: the input shape is not known yet; pass the shape of "
                         "one sample without the batch axis, e.g. summary(input_shape=(1, 28, 28)), "
                         "or call fit/predict first")
    from ..training.inputs import _dtype

    be = model.backend
    x = be.xp.zeros((1, *shape), dtype=be.dtype(_dtype(model)), device=be.device)
    rows = []
    trainable = frozen = trainable_bytes = frozen_bytes = 0
    for i, layer in enumerate(model.layers):
        name = type(layer).__name__
        try:
            x = layer.forward(x)
        except Exception as exc:
            raise ValueError(f"Sequential.summary: layer {i} ({name}) cannot take an input of shape "
                             f"{('batch', *tuple(x.shape[1:]))}: {exc}") from exc
        count = sum(_size(v) for v in layer.params.values())
        trainable += count
        trainable_bytes += sum(_nbytes(v) for v in layer.params.values())
        frozen += sum(_size(v) for v in layer.buffers.values())
        frozen_bytes += sum(_nbytes(v) for v in layer.buffers.values())
        rows.append((f"{i}: {name}", str((None, *tuple(x.shape[1:]))), f"{count:,}"))
    header = ("Layer", "Output shape", "Param #")
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(3)]

    def line(r: tuple[str, str, str]) -> str:
        return f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}"

    rule = "-" * len(line(header))
    body = [rule, line(header), rule, *map(line, rows), rule,
            f"Input shape: {(None, *shape)}   backend: {be}",
            f"Trainable params: {trainable:,} ({_human(trainable_bytes)})",
            f"Non-trainable params: {frozen:,} ({_human(frozen_bytes)})",
            f"Total params: {trainable + frozen:,} ({_human(trainable_bytes + frozen_bytes)})",
            rule]
    return "\n".join(body)


def _size(a: Any) -> int:
    n = 1
    for d in a.shape:
        n *= int(d)
    return n


def _nbytes(a: Any) -> int:
    from ..backends import array_namespace

    xp = array_namespace(a)
    info = xp.finfo(a.dtype) if xp.isdtype(a.dtype, "real floating") else xp.iinfo(a.dtype)
    return _size(a) * info.bits // 8


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GB"

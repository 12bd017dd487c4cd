"""``model.summary()``: each layer's output shape and parameter count, and the totals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["summary"]


def summary(model: Any, input_shape: Sequence[int] | None = None) -> str:
    """The summary table of ``model`` as a string (see :meth:`portnn.Sequential.summary`).

    A stack's output shapes come from one forward pass of a single zero sample on the
    model's backend (``training=False``: running statistics are not touched); a graph's
    (:class:`portnn.Model`) are known from its construction, and a column says which rows
    feed each node. Trainable values are ``params``; non-trainable ones are ``buffers``
    (BatchNorm's running mean and variance). A layer used more than once counts once.
    """
    graph = getattr(model, "nodes", None) is not None
    rows, inputs = _graph_rows(model) if graph else _stack_rows(model, input_shape)
    header = ("Layer", "Output shape", "Param #", "Connected to")[:4 if graph else 3]
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]

    def line(r: tuple[str, ...]) -> str:
        cells = [f"{r[0]:<{widths[0]}}", f"{r[1]:<{widths[1]}}", f"{r[2]:>{widths[2]}}", *r[3:]]
        return "  ".join(cells).rstrip()

    trainable = [model.named_parameters(), "params"]
    frozen = [model.named_buffers(), "buffers"]
    counts = [sum(_size(getattr(owner, store)[k]) for _, owner, k in slots) for slots, store in
              (trainable, frozen)]
    sizes = [sum(_nbytes(getattr(owner, store)[k]) for _, owner, k in slots) for slots, store in
             (trainable, frozen)]
    rule = "-" * max(len(line(header)), *(len(line(r)) for r in rows))
    body = [rule, line(header), rule, *map(line, rows), rule,
            f"Input shape: {inputs}   backend: {model.backend}",
            f"Trainable params: {counts[0]:,} ({_human(sizes[0])})",
            f"Non-trainable params: {counts[1]:,} ({_human(sizes[1])})",
            f"Total params: {sum(counts):,} ({_human(sum(sizes))})",
            rule]
    return "\n".join(body)


def _stack_rows(model: Any, input_shape: Sequence[int] | None) -> tuple[list[tuple[str, ...]], str]:
    shape = tuple(input_shape) if input_shape is not None else model.input_shape
    if shape is None:
        raise ValueError("Sequential.summary: the input shape is not known yet; pass the shape of "
                         "one sample without the batch axis, e.g. summary(input_shape=(1, 28, 28)), "
                         "or call fit/predict first")
    from ..training.inputs import _dtype

    be = model.backend
    x = be.xp.zeros((1, *shape), dtype=be.dtype(_dtype(model)), device=be.device)
    rows, seen = [], set()
    for i, layer in enumerate(model.layers):
        name = type(layer).__name__
        try:
            x = layer.forward(x)
        except Exception as exc:
            raise ValueError(f"Sequential.summary: layer {i} ({name}) cannot take an input of shape "
                             f"{('batch', *tuple(x.shape[1:]))}: {exc}") from exc
        rows.append((f"{i}: {name}", str((None, *tuple(x.shape[1:]))), _count(layer, seen)))
    return rows, str((None, *shape))


def _graph_rows(model: Any) -> tuple[list[tuple[str, ...]], str]:
    labels = {id(t): t.name or f"input {i}" for i, t in enumerate(model.inputs)}
    rows = [(labels[id(t)], str((None, *t.shape)), "0", "") for t in model.inputs]
    index = {id(layer): i for i, layer in enumerate(model.layers)}
    uses: dict[int, int] = {}
    seen: set[int] = set()
    for node in model.nodes:
        layer = node.layer
        uses[id(layer)] = uses.get(id(layer), 0) + 1
        label = f"{index[id(layer)]}: {type(layer).__name__}" + (
            f" (call {uses[id(layer)]})" if sum(n.layer is layer for n in model.nodes) > 1 else "")
        labels[id(node.output)] = label
        rows.append((label, str((None, *node.output.shape)), _count(layer, seen),
                     ", ".join(labels[id(t)] for t in node.inputs)))
    return rows, ", ".join(str((None, *t.shape)) for t in model.inputs)


def _count(layer: Any, seen: set[int]) -> str:
    """The parameters of ``layer`` and its children; ``shared`` at a later call of the same layer."""
    if id(layer) in seen:
        return "shared"
    seen.add(id(layer))
    return f"{sum(_size(owner.params[k]) for _, owner, k in layer.named_parameters()):,}"


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

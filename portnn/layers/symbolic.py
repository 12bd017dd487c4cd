"""Symbolic tensors: what :func:`Input` gives and a layer called on one returns (Keras' functional API).

Calling a layer on symbolic tensors computes nothing: it records a :class:`Node` (the
layer and the tensors it takes) and finds the output's shape by running the layer once
on a zero sample, so a layer that cannot take its inputs fails at the line that built
the graph, naming the layer and the shapes. :class:`portnn.Model` walks the nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import _checks
from ..backends import get_backend

Layer = Any  # portnn.layers.Layer (its module imports this one)

__all__ = ["Input", "Node", "SymbolicTensor", "call", "index_reader", "is_symbolic"]


class SymbolicTensor:
    """A placeholder for a batch: one sample's ``shape`` (``None`` for a size that varies) and the
    :class:`Node` that makes it (``None`` for an :func:`Input`)."""

    def __init__(self, shape: tuple[int | None, ...], node: Node | None = None,
                 name: str | None = None) -> None:
        self.shape, self.node, self.name = shape, node, name

    def __repr__(self) -> str:
        source = "Input" if self.node is None else type(self.node.layer).__name__
        return f"<SymbolicTensor shape={(None, *self.shape)} from {self.name or source}>"


class Node:
    """One call of a layer in a graph: the tensors it takes (a list for a merge layer) and makes."""

    def __init__(self, layer: Layer, inputs: list[SymbolicTensor], many: bool) -> None:
        self.layer, self.inputs, self.many = layer, inputs, many
        self.output: SymbolicTensor | None = None


def Input(shape: Sequence[int | None], name: str | None = None) -> SymbolicTensor:  # noqa: N802
    """A model input: ``shape`` is one sample's, without the batch axis (``None`` for a size that
    varies, e.g. a sequence's length).

    Example:
        >>> x = portnn.Input((784,))
        >>> y = portnn.Dense(784, 10)(x)
    """
    if isinstance(shape, int):
        shape = (shape,)
    if not isinstance(shape, Sequence) or isinstance(shape, str):
        raise TypeError(f"Input: shape must be a tuple of sizes (one sample's, e.g. (784,) or "
                        f"(1, 28, 28)), got {shape!r}")
    for d in shape:
        if d is not None:
            _checks.integer("Input", "shape", d)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"Input: name must be a string, got {name!r}")
    return SymbolicTensor(tuple(None if d is None else int(d) for d in shape), name=name)


def is_symbolic(x: Any) -> bool:
    """``x`` is a symbolic tensor, or a list or tuple holding one."""
    if isinstance(x, list | tuple):
        return any(isinstance(t, SymbolicTensor) for t in x)
    return isinstance(x, SymbolicTensor)


def call(layer: Layer, x: Any) -> SymbolicTensor:
    """``layer(x)`` on symbolic tensors: a new node, and its output with the shape the layer gives."""
    many = isinstance(x, list | tuple)
    tensors = list(x) if many else [x]
    if not all(isinstance(t, SymbolicTensor) for t in tensors):
        raise TypeError(f"{type(layer).__name__}: called on a mix of symbolic tensors and arrays; "
                        "in a graph every input must come from portnn.Input or another layer")
    node = Node(layer, tensors, many)
    node.output = SymbolicTensor(output_shape(layer, [t.shape for t in tensors], many), node)
    return node.output


def output_shape(layer: Layer, shapes: list[tuple[int | None, ...]],
                 many: bool) -> tuple[int | None, ...]:
    """One sample's output shape, by running ``layer`` on zero samples of ``shapes`` (twice when a
    size is ``None``: with 1 and 2 there; the sizes that then differ are ``None`` too)."""
    first = _probe(layer, shapes, many, 1)
    if not any(d is None for shape in shapes for d in shape):
        return first
    second = _probe(layer, shapes, many, 2)
    return tuple(a if a == b else None for a, b in zip(first, second, strict=True))


def _probe(layer: Layer, shapes: list[tuple[int | None, ...]], many: bool,
           free: int) -> tuple[int, ...]:
    be = layer.backend or get_backend()
    indices = index_reader(layer) is not None
    dtype = be.dtype(be.index_dtype if indices else float_dtype(layer))
    xs = [be.xp.zeros((1, *(free if d is None else d for d in shape)), dtype=dtype, device=be.device)
          for shape in shapes]
    try:
        with be.activate():
            y = layer.forward(xs if many else xs[0])
    except Exception as exc:
        given = ", ".join(str((None, *shape)) for shape in shapes)
        kind = TypeError if isinstance(exc, TypeError) else ValueError
        raise kind(f"{type(layer).__name__}: cannot take an input of shape {given}: {exc}") from exc
    return tuple(int(d) for d in y.shape[1:])


def float_dtype(layer: Layer) -> str:
    """The float dtype of a layer's (or a block's first) parameters: what its input is cast to."""
    return next((sub.dtype for _, sub in layer.layers_by_path() if hasattr(sub, "dtype")), "float32")


def index_reader(layer: Layer | None) -> Layer | None:
    """The :class:`~portnn.Embedding` that ``layer``'s input goes into first (through nested
    stacks and graphs), or ``None`` when the input is features."""
    specs = getattr(layer, "input_specs", None)
    if specs is not None:  # a model: what its (first) input goes into
        return specs()[0][1]
    while getattr(layer, "layers", None):
        layer = layer.layers[0]
    return layer if getattr(layer, "input_kind", "features") == "indices" else None

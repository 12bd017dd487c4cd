"""Model: a graph of layers from :func:`~portnn.Input` tensors to an output (Keras' functional API).

The graph is the nodes that calling layers on symbolic tensors recorded
(:mod:`portnn.layers.symbolic`), in topological order. ``forward`` runs them in
that order; ``backward`` walks them in reverse (micrograd's ``Value.backward``),
adding the gradients where a tensor feeds several nodes. A layer called more
than once shares its parameters: each call keeps its own caches
(:meth:`~portnn.layers.Layer.call_state`, owned by the node) and the parameter
gradients are the sum over the calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import losses, optimizers
from ..backends import Backend
from ..layers import Layer
from ..layers.symbolic import Input, Node, SymbolicTensor, index_reader
from .base import BaseModel, backward_use

__all__ = ["Model"]


class Model(BaseModel):
    """The layers between ``inputs`` and ``outputs``, trained with a loss and an optimizer.

    Args:
        inputs: a :func:`portnn.Input` tensor, or a list of them (``fit`` then takes a list of
            arrays in that order: ``fit([x1, x2], y)``).
        outputs: the symbolic tensor the last layer returned.
        loss, optimizer, backend, device, metrics: as :class:`portnn.Sequential`'s.

    Parameters have paths ``"0.weight"``, ... by each layer's first call. Without a loss and an
    optimizer a model is a layer: call it on symbolic tensors to nest it (a shared encoder).

    Example:
        >>> a, b = portnn.Input((4,)), portnn.Input((4,))
        >>> encode = portnn.Dense(4, 8)
        >>> joined = portnn.Concatenate()([encode(a), encode(b)])
        >>> model = portnn.Model([a, b], portnn.Dense(16, 1)(joined), loss="mse", optimizer="adam")
        >>> history = model.fit([x1, x2], y, epochs=10)
    """

    def __init__(self, inputs: SymbolicTensor | Sequence[SymbolicTensor], outputs: SymbolicTensor,
                 loss: str | losses.Loss | None = None,
                 optimizer: str | optimizers.Optimizer | None = None,
                 backend: str | Backend | None = None, device: str | None = None,
                 metrics: Sequence[str] | None = None) -> None:
        self.inputs = _inputs(inputs)
        self.outputs = _output(outputs)
        self.nodes = _nodes(self.inputs, self.outputs)
        self.layers = list({id(node.layer): node.layer for node in self.nodes}.values())
        uses: dict[int, int] = {}
        for node in self.nodes:
            uses[id(node.layer)] = uses.get(id(node.layer), 0) + 1
        # Each tensor by position: the inputs, then each node's output in order.
        position = {id(t): i for i, t in enumerate(self.inputs)}
        position.update({id(node.output): len(self.inputs) + j for j, node in enumerate(self.nodes)})
        self._calls = [(node.layer, [position[id(t)] for t in node.inputs], node.many,
                        uses[id(node.layer)] > 1) for node in self.nodes]
        self._shared = any(shared for *_, shared in self._calls)
        self._states: dict[int, Any] = {}
        # Which tensors have a trained parameter upstream: only their gradients are needed.
        trains = [False] * len(self.inputs)
        self._passes = []
        for layer, args, _, _ in self._calls:
            self._passes.append(any(trains[i] for i in args))
            trains.append(self._passes[-1] or bool(layer.named_parameters()))
        self._trains = trains[len(self.inputs):]
        super().__init__(loss, optimizer, backend, device, metrics)

    def children(self) -> dict[str, Layer]:
        return {str(i): layer for i, layer in enumerate(self.layers)}

    def config(self) -> dict[str, Any]:
        return {}  # the graph is saved by graph_config()

    def input_specs(self) -> list[tuple[tuple[int | None, ...] | None, Layer | None]]:
        specs = []
        for t in self.inputs:
            readers = [index_reader(n.layer) for n in self.nodes if not n.many and n.inputs[0] is t]
            specs.append((t.shape, next((r for r in readers if r is not None), None)))
        return specs

    def forward(self, x: Any, training: bool = False) -> Any:
        values = self._feed(x)
        states = {}
        for j, (layer, args, many, shared) in enumerate(self._calls):
            xs = [values[i] for i in args]
            values.append(layer.forward(xs if many else xs[0], training))
            if shared:  # this call's caches, for its backward: the node owns them, not the layer
                states[j] = layer.call_state()
        if self._shared:
            self._states = states
        return values[-1]

    def backward(self, dy: Any) -> Any:
        return self._backward(dy, params_only=False)

    def backward_params(self, dy: Any) -> None:
        self._backward(dy, params_only=True)

    def _feed(self, x: Any) -> list[Any]:
        if len(self.inputs) == 1:
            return [x]
        if not isinstance(x, list | tuple) or len(x) != len(self.inputs):
            got = f"a list of {len(x)}" if isinstance(x, list | tuple) else f"a {type(x).__name__}"
            raise TypeError(f"Model: takes {len(self.inputs)} inputs, a list of {len(self.inputs)} "
                            f"arrays in the order of inputs=[...]; got {got}")
        return list(x)

    def _backward(self, dy: Any, params_only: bool) -> Any:
        k = len(self.inputs)
        grads: list[Any] = [None] * (k + len(self._calls))
        grads[-1] = dy
        seen: set[int] = set()
        for j in range(len(self._calls) - 1, -1, -1):
            layer, args, many, shared = self._calls[j]
            g, grads[k + j] = grads[k + j], None
            if params_only and not self._trains[j]:
                continue  # nothing at or before this node trains
            only = params_only and not self._passes[j]  # nobody reads this node's input gradients
            dx = backward_use(layer, g, self._states[j] if shared else None, seen, only)
            if only:
                continue
            for i, d in zip(args, dx if many else [dx], strict=True):
                grads[i] = d if grads[i] is None else grads[i] + d  # a tensor feeding several nodes
        return grads[0] if k == 1 else grads[:k]

    # ------------------------------------------------------------------ checkpoints

    def graph_config(self) -> dict[str, Any]:
        """The graph as JSON-ready data: the inputs, each node's layer (by index into ``layers``)
        and input positions (inputs first, then each node's output), and the output's position."""
        index = {id(layer): i for i, layer in enumerate(self.layers)}
        return {"inputs": [{"shape": list(t.shape), "name": t.name} for t in self.inputs],
                "nodes": [{"layer": index[id(layer)], "inputs": args, "many": many}
                          for layer, args, many, _ in self._calls],
                "output": len(self.inputs) + len(self._calls) - 1}

    @classmethod
    def rebuild(cls, layers: list[Layer], graph: dict[str, Any] | None = None) -> Model:
        if graph is None:
            raise ValueError("Model: the checkpoint has no graph entry")
        tensors = [Input(spec["shape"], spec["name"]) for spec in graph["inputs"]]
        inputs = list(tensors)
        for node in graph["nodes"]:
            args = [tensors[i] for i in node["inputs"]]
            tensors.append(layers[node["layer"]](args if node["many"] else args[0]))
        return cls(inputs if len(inputs) > 1 else inputs[0], tensors[graph["output"]])


def _inputs(inputs: Any) -> list[SymbolicTensor]:
    tensors = list(inputs) if isinstance(inputs, list | tuple) else [inputs]
    if not tensors:
        raise ValueError("Model: inputs is empty; pass the portnn.Input tensors the graph starts from")
    for i, t in enumerate(tensors):
        if not isinstance(t, SymbolicTensor) or t.node is not None:
            raise TypeError(f"Model: inputs[{i}] must be a tensor made by portnn.Input(shape), got {t!r}")
        if any(t is u for u in tensors[:i]):
            raise ValueError(f"Model: inputs[{i}] is the same Input as an earlier one; list each once")
    return tensors


def _output(outputs: Any) -> SymbolicTensor:
    if isinstance(outputs, list | tuple):
        if len(outputs) != 1:
            raise ValueError(f"Model: {len(outputs)} outputs; a model has one output (one loss) so "
                             "far: join them (portnn.Concatenate) or build one model per output")
        outputs = outputs[0]
    if not isinstance(outputs, SymbolicTensor):
        raise TypeError(f"Model: outputs must be the symbolic tensor a layer returned, got {outputs!r}")
    if outputs.node is None:
        raise ValueError("Model: the output is an Input itself, so the model has no layers; call "
                         "layers on the input and pass what the last one returns")
    return outputs


def _nodes(inputs: list[SymbolicTensor], output: SymbolicTensor) -> list[Node]:
    """The nodes the output depends on, each after the nodes it takes inputs from."""
    order: list[Node] = []
    seen: set[int] = set()
    reached: set[int] = set()
    stack: list[tuple[SymbolicTensor, bool]] = [(output, False)]  # no recursion: deep graphs work
    while stack:
        t, done = stack.pop()
        if t.node is None:
            if not any(t is u for u in inputs):
                raise ValueError(f"Model: the output depends on {t!r}, which is not in inputs; "
                                 "add it to inputs=[...]")
            reached.add(id(t))
        elif done:
            order.append(t.node)  # every node it takes inputs from is in order already
        elif id(t.node) not in seen:
            seen.add(id(t.node))
            stack.append((t, True))
            stack.extend((u, False) for u in reversed(t.node.inputs))
    unused = [f"inputs[{i}]" + (f" ({t.name})" if t.name else "") for i, t in enumerate(inputs)
              if id(t) not in reached]
    if unused:
        raise ValueError(f"Model: {', '.join(unused)} do not reach the output; remove them from "
                         "inputs or use them in the graph")
    return order

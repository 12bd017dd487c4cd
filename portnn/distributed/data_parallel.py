"""Data parallelism: each rank trains on its slice of every global batch; the gradients meet.

The pieces the training loop calls are public for custom loops:
:func:`prepare`, :func:`shard`, :func:`reduce_gradients`, :func:`reduce_logs`.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_extra as xpx
import numpy as np

from .. import backends
from ..backends import array_namespace
from ..backends._communicators import Communicator
from ..training import batches
from ..training.step import LOCAL, Local
from .launch import resolve

__all__ = ["DataParallel", "evaluate", "predict", "prepare", "reduce_gradients", "reduce_logs", "shard"]


# --------------------------------------------------------------------------- training


def shard(start: int, stop: int, comm: Communicator,
          weights: np.ndarray | None = None) -> tuple[int, int, float]:
    """This rank's part ``[lo, hi)`` of the global batch ``[start, stop)`` and its weight ``(hi - lo) / B``.

    The ``B = stop - start`` samples are split into ``comm.size`` contiguous
    parts whose sizes differ by at most one (the first ``B % size`` ranks take
    one more). Each rank's loss is the mean over its part; weighting its
    gradients by its share of the batch makes their sum the gradient of the
    mean over the whole batch, also for uneven parts and a short last batch.
    With per-sample ``weights`` (host, the batch's ``B`` in batch order; a
    weighted-mean loss) the share is the part's weight over the batch's.

    Example:
        >>> shard(0, 7, comm)   # rank 1 of 2
        (4, 7, 0.42857142857142855)
    """
    sizes = _sizes(stop - start, comm.size)
    lo = start + sum(sizes[:comm.rank])
    hi = lo + sizes[comm.rank]
    if weights is None:
        return lo, hi, (hi - lo) / (stop - start)
    return lo, hi, float(np.sum(weights[lo - start:hi - start]) / np.sum(weights))


def _entries(model: Any) -> list[tuple[str, dict[str, Any], str]]:
    """Every array a rank must share: ``(name, owning dict, key)`` for params, buffers, optimizer state."""
    found = [(f"param/{path}", layer.params, key) for path, layer, key in model.named_parameters()]
    found += [(f"buffer/{path}", layer.buffers, key) for path, layer, key in model.named_buffers()]
    if model.optimizer is not None:
        for owner, state in sorted(model.optimizer.state.items()):
            found += [(f"opt/{owner}/{key}", state, key) for key in sorted(state)]
    return found


def prepare(model: Any, comm: Communicator) -> None:
    """Make every rank's model rank 0's: parameters, buffers, optimizer state and step counters.

    Everything travels in one broadcast per dtype. Ranks must build the same
    architecture; optimizer state that only rank 0 has (a loaded checkpoint) is
    created on the others. Also gives each rank its own dropout stream.
    """
    backends.set_stream(comm.rank)
    if comm.size == 1:
        return
    mine = {name: (tuple(store[key].shape), str(store[key].dtype)) for name, store, key in _entries(model)}
    opt = model.optimizer
    root = comm.broadcast_object((mine, None if opt is None else (opt.t, opt.epoch)))
    layout, counters = root
    differ = sorted(name for name in set(layout) | set(mine) if not name.startswith("opt/")
                    and layout.get(name) != mine.get(name))
    if differ:
        raise ValueError(f"portnn.distributed.prepare: rank {comm.rank}'s model differs from rank 0's "
                         f"at {differ[:3]} (rank 0: {[layout.get(d) for d in differ[:3]]}, here: "
                         f"{[mine.get(d) for d in differ[:3]]}); build the same model on every rank")
    if opt is not None:
        opt.t, opt.epoch = counters
        be = model.backend
        for name, (shape, dtype) in layout.items():
            if name.startswith("opt/") and mine.get(name) != (shape, dtype):
                owner, _, key = name[len("opt/"):].rpartition("/")
                opt.state.setdefault(owner, {})[key] = be.xp.zeros(shape, dtype=be.dtype(_dtype_name(dtype)),
                                                                   device=be.device)
        for owner in list(opt.state):
            for key in [k for k in opt.state[owner] if f"opt/{owner}/{k}" not in layout]:
                del opt.state[owner][key]
    _broadcast_in_place([(store, key) for _, store, key in _entries(model)], comm)


def _dtype_name(dtype: str) -> str:
    return dtype.rsplit(".", 1)[-1]  # "torch.float64" -> "float64"


def _groups(items: list[tuple[dict[str, Any], str]]) -> list[list[tuple[dict[str, Any], str]]]:
    by_dtype: dict[str, list[tuple[dict[str, Any], str]]] = {}
    for store, key in items:
        by_dtype.setdefault(str(store[key].dtype), []).append((store, key))
    return list(by_dtype.values())


def _pack(items: list[tuple[dict[str, Any], str]]) -> Any:
    xp = array_namespace(items[0][0][items[0][1]])
    return xp.concat([xp.reshape(store[key], (-1,)) for store, key in items])


def _pieces(flat: Any, items: list[tuple[dict[str, Any], str]]) -> Any:
    xp, offset = array_namespace(flat), 0
    for store, key in items:
        shape = tuple(store[key].shape)
        size = math.prod(shape)
        yield store, key, xp.reshape(flat[offset:offset + size], shape)
        offset += size


def _broadcast_in_place(items: list[tuple[dict[str, Any], str]], comm: Communicator) -> None:
    for group in _groups(items):
        for store, key, value in _pieces(comm.broadcast(_pack(group)), group):
            # In place where arrays are mutable (parameters keep their identity); else the new array.
            new = xpx.at(store[key])[...].set(value)
            if new is not store[key]:
                (store.store if hasattr(store, "store") else store.__setitem__)(key, new)


def reduce_gradients(layers: Any, comm: Communicator, weight: float = 1.0) -> None:
    """Sum every parameter gradient over the ranks: one flat buffer and one allreduce per dtype.

    ``weight`` scales this rank's gradients before the sum (its share of the
    global batch when they are gradients of its own mean loss; 1 when the
    loss gradient was already weighted, as :meth:`DataParallel.scale` does).
    """
    items = [(layer.grads, key) for layer in layers for key in layer.params]
    for group in _groups(items):
        flat = _pack(group)
        if weight != 1.0:
            flat = flat * weight
        for store, key, value in _pieces(comm.allreduce(flat), group):
            store[key] = value


def reduce_logs(sums: dict[str, Any], comm: Communicator) -> dict[str, float | None]:
    """An epoch's sums (0-d device arrays, numbers or ``None``) added over the ranks, as floats.

    One host read per value (the epoch's read-back) and one allreduce in all;
    a value is ``None`` only where it is ``None`` on every rank (a rank without
    samples has no sums).
    """
    keys = list(sums)
    local = [0.0 if sums[k] is None else float(sums[k]) for k in keys]
    present = [float(sums[k] is not None) for k in keys]
    total = comm.allreduce(np.array(local + present))
    return {k: float(total[i]) if total[len(keys) + i] else None for i, k in enumerate(keys)}


class DataParallel(Local):
    """One ``fit``'s data parallelism: which samples this rank trains on and how gradients meet.

    Built by ``fit(..., distributed=...)``; the loop calls :meth:`shared`,
    :meth:`shard`, passes the object to ``train_step`` (which calls
    :meth:`scale` and :meth:`reduce`), and :meth:`end_epoch`.
    """

    def __init__(self, model: Any, comm: Communicator) -> None:
        self.model, self.comm, self.weight = model, comm, 1.0
        self._sync: list[Any] = []

    @classmethod
    def plan(cls, model: Any, distributed: bool | Communicator | None) -> Local:
        """The strategy of a fit with ``distributed=...``: :data:`LOCAL` when it runs on one process."""
        comm = resolve(distributed)
        if comm is None or comm.size == 1:
            backends.set_stream(0)
            return LOCAL
        return cls(model, comm)

    def begin(self, n: int) -> None:
        """Every rank rank 0's model, once each holds the same ``n`` samples."""
        counts = [int(c) for c in self.comm.allgather(np.array([n]))]
        if len(set(counts)) > 1:
            raise ValueError(f"fit(distributed=...): every rank must pass the same whole (x, y) and take "
                             f"its slices; the ranks hold {counts} samples")
        prepare(self.model, self.comm)
        self._sync = [layer for _, layer in self.model.layers_by_path() if getattr(layer, "sync", False)]
        for layer in self._sync:
            layer.allreduce = self.comm.allreduce

    def shared(self, order: np.ndarray | None) -> np.ndarray | None:
        """Rank 0's epoch permutation, for every rank (each drew one, so their generators stay alike)."""
        return None if order is None else self.comm.broadcast(order)

    def shard(self, start: int, stop: int, order: np.ndarray | None = None,
              weights: np.ndarray | None = None) -> tuple[int, int]:
        """This rank's ``[lo, hi)`` of the global batch; its weight is kept for :meth:`scale`."""
        if self._sync and stop - start < self.comm.size:
            raise ValueError(f"BatchNorm(sync=True) needs a sample on every rank, but the batch "
                             f"[{start}, {stop}) has {stop - start} for {self.comm.size} ranks; choose a "
                             f"batch_size that leaves a last batch of >= {self.comm.size} samples")
        if weights is not None:
            weights = weights[slice(start, stop) if order is None else order[start:stop]]
        lo, hi, self.weight = shard(start, stop, self.comm, weights)
        return lo, hi

    def scale(self, dy: Any) -> Any:
        """The loss gradient weighted by this rank's share: the gradient of the global mean loss."""
        return dy * self.weight

    def per_step(self) -> dict[str, float]:
        return {"weight": self.weight}

    def reduce(self, model: Any) -> None:
        reduce_gradients([layer for _, layer in model.layers_by_path()], self.comm)

    def empty_step(self) -> None:
        """A rank without samples in this (short) batch still joins the sum (then steps, as all do)."""
        for _, layer, key in self.model.named_parameters():
            w = layer.params[key]
            layer.grads[key] = array_namespace(w).zeros_like(w)
        self.reduce(self.model)

    def end_epoch(self, sums: dict[str, Any]) -> dict[str, float | None]:
        """Every rank the same logs (:func:`reduce_logs`) and buffers (BatchNorm running stats averaged)."""
        items = [(layer.buffers, key) for _, layer, key in self.model.named_buffers()]
        for group in _groups(items):
            for store, key, value in _pieces(self.comm.allreduce(_pack(group)), group):
                store[key] = value / self.comm.size
        return reduce_logs(sums, self.comm)

    def evaluate(self, x: Any, y: Any, local: Any) -> dict[str, float]:
        """:func:`evaluate` on this fit's communicator."""
        return evaluate(x, y, self.comm, local)

    def close(self) -> None:
        for layer in self._sync:
            layer.allreduce = None


# --------------------------------------------------------------------------- inference


def evaluate(x: Any, y: Any, comm: Communicator, local: Any) -> dict[str, float]:
    """Mean loss and metrics over all ranks' contiguous parts of ``(x, y)``, the same on every rank.

    ``local(x, y)`` evaluates one part: its per-sample means as floats.
    """
    n = batches.count(x)
    lo, hi, _ = shard(0, n, comm)
    logs = local(batches.rows(x, lo, hi), y[lo:hi, ...]) if hi > lo else {}
    keys = comm.broadcast_object(list(logs))  # rank 0 always has a part
    sums = comm.allreduce(np.array([logs.get(k, 0.0) * (hi - lo) for k in keys]))
    return {k: float(s) / n for k, s in zip(keys, sums, strict=True)}


def _sizes(n: int, size: int) -> list[int]:
    base, extra = divmod(n, size)
    return [base + (r < extra) for r in range(size)]


def predict(model: Any, x: Any, comm: Communicator, batch_size: int | None = None) -> Any:
    """``model.predict(x)`` computed in parts, one per rank, and gathered on every rank."""
    n = batches.count(x)
    if n == 0 or comm.size == 1:
        return model.predict(x, batch_size)
    lo, hi, _ = shard(0, n, comm)
    rows = -(-n // comm.size)
    # Equal shapes for the gather: pad with leading rows of x, dropped again below.
    part = batches.each(x, lambda a: a[lo:hi, ...] if hi - lo == rows else
                        array_namespace(a).concat([a[lo:hi, ...], a[:rows - (hi - lo), ...]]))
    out = model.predict(part, batch_size)
    gathered = comm.allgather(out)
    xp = array_namespace(out)
    return xp.concat([gathered[r * rows:r * rows + k, ...] for r, k in enumerate(_sizes(n, comm.size))])

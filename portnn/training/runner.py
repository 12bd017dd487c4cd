"""How the loop runs one batch: eagerly, op by op, or as one compiled program.

A runner holds the data of a fit and does, per batch, what the loop asks:
select the batch, :func:`~portnn.training.step.train_step` on it, and add its
loss and metrics to the epoch's on-device sums. :class:`Eager` runs that op by
op on any backend. :class:`Compiled` makes the same work one program where the
backend compiles (JAX: ``jax.jit``): a pure function of the parameters,
buffers, optimizer state, step count, learning rate and random key, traced
through the unchanged ``train_step`` (layers keep their ``self.x`` caches: they
live inside one trace). The step count and the learning rate are traced values,
so neither a new epoch nor a schedule compiles again; a short last batch
compiles once more, and the first batch of an epoch (which starts the sums) once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import _device_rngs, _libraries
from ..backends import _fast as fast
from . import batches
from .step import Local, train_step

__all__ = ["Compiled", "Eager", "make"]


def make(model: Any, jit: bool | None, data: tuple[Any, Any, Any], strategy: Local,
         slots: list[tuple[str, Any, str]], metrics: dict[str, Any]) -> Eager:
    """The runner ``fit(jit=...)`` asks for: ``None`` compiles where the backend can, ``True``
    requires it (a clear error where it cannot), ``False`` runs eagerly."""
    be = model.backend
    if jit is not None and not isinstance(jit, bool):
        raise TypeError(f"fit: jit must be None, True or False, got {jit!r}")
    if jit and not be.library.compiles:
        raise ValueError(f"fit(jit=True): the {be.name} backend does not compile training steps; "
                         "use jit=None (compile where the backend can) or jit=False, or train on "
                         "PORTNN_BACKEND=jax")
    if not (be.library.compiles if jit is None else jit):
        return Eager(model, data, strategy, slots, metrics)
    # A later fit of the same model (one epoch per call, say) reuses the programs compiled so far,
    # unless anything frozen into them changed: layers, loss, optimizer settings, strategy, device.
    key = _signature(model, strategy, slots, metrics)
    kept = getattr(model, "_compiled", None)
    if kept is None or kept.key != key:
        kept = model._compiled = Compiled(model, data, strategy, slots, metrics)
        kept.key = key
    kept.slots, kept.data, kept.metrics, kept.strategy = slots, data, metrics, strategy
    model.optimizer.init_state(kept.paths, [owner.params[k] for _, owner, k in slots])
    return kept


def _signature(model: Any, strategy: Local, slots: list[tuple[str, Any, str]],
               metrics: dict[str, Any]) -> tuple[Any, ...]:
    opt = model.optimizer
    settings = {k: v for k, v in opt.config().items() if k != "lr"}  # lr is a traced value
    return (str(model.backend), [(path, id(owner), key) for path, owner, key in slots],
            [repr(layer) for _, layer in model.layers_by_path()[1:]], repr(model.loss), id(model.loss),
            id(opt), type(opt), repr(settings), callable(opt.lr), id(strategy),
            [(name, id(fn)) for name, fn in metrics.items()])


class Eager:
    """One batch op by op: the gather, :func:`train_step`, the sums (nothing read back)."""

    def whole_epoch(self, n: int, batch_size: int,
                    weights: np.ndarray | None) -> tuple[dict[str, Any], float] | None:
        """The epoch's batches in one go, where that is one program; ``None``: the loop steps each."""
        return None

    def __init__(self, model: Any, data: tuple[Any, Any, Any], strategy: Local,
                 slots: list[tuple[str, Any, str]], metrics: dict[str, Any]) -> None:
        self.model, self.data, self.strategy, self.slots, self.metrics = model, data, strategy, slots, metrics
        self.backend = model.backend  # kept: model.backend walks the layers
        self.order: np.ndarray | None = None
        self.order_dev: Any = None

    def begin_epoch(self, order: np.ndarray | None) -> None:
        """The epoch's permutation (host), or ``None`` for the data's own order."""
        self.order = order
        self.order_dev = None if order is None else self.backend.asarray(order, copy=False)

    def __call__(self, start: int, stop: int, share: float, sums: dict[str, Any]) -> dict[str, Any]:
        """Train on rows ``[start, stop)`` of the epoch's order; return ``sums`` with this batch added.

        ``share`` weighs the batch's mean loss in the epoch's (its size, or its weight sum).
        """
        xb, yb, wb = self._batch(start, stop)
        loss, out = train_step(self.model, xb, yb, wb, self.strategy, self.slots)
        return accumulate(sums, loss, share, out, yb, self.metrics, self.model.loss)

    def _batch(self, start: int, stop: int) -> tuple[Any, Any, Any]:
        (x, y, w), order = self.data, self.order
        if order is None:
            return batches.rows(x, start, stop), y[start:stop, ...], None if w is None else w[start:stop]
        if stop - start == 1:  # a batch of one is a slice (a view), cheaper than a gather
            i = int(order[start])  # order is on the host: no device read
            return batches.rows(x, i, i + 1), y[i:i + 1, ...], None if w is None else w[i:i + 1]
        idx = self.order_dev[start:stop]
        return (batches.each(x, lambda a: fast.take(a, idx)), fast.take(y, idx),
                None if w is None else fast.take(w, idx))


def accumulate(sums: dict[str, Any], loss: Any, share: float, out: Any, yb: Any,
               metrics: dict[str, Any], loss_fn: Any) -> dict[str, Any]:
    """The running on-device sums with one batch added: ``"__loss"`` (weighted by ``share``) and
    each metric. An empty ``sums`` starts them (no add, no zeros)."""
    new = {"__loss": _add(sums.get("__loss"), loss * share)}
    for name, metric in metrics.items():
        new[name] = _add(sums.get(name), metric(out, yb, loss_fn))
    return new


def _add(total: Any, value: Any) -> Any:
    """Running on-device sum; ``None`` is the empty sum (and a ``None`` value adds nothing)."""
    if value is None:
        return total
    return value if total is None else total + value


class Compiled(Eager):
    """One batch as one compiled program (the backend's :meth:`~portnn.backends._libraries.Library.compile`).

    The program takes the whole training data and the batch's row indices (a
    small host array), so the gather is inside it too. The arrays going in are
    donated: after a step, only the model's dicts hold the live parameters.
    """

    def __init__(self, model: Any, data: tuple[Any, Any, Any], strategy: Local,
                 slots: list[tuple[str, Any, str]], metrics: dict[str, Any]) -> None:
        super().__init__(model, data, strategy, slots, metrics)
        be = self.backend
        self.buffers = model.named_buffers()
        self.paths = [path for path, _, _ in slots]
        self.rng = (be.name, be.device_name)
        self.index = np.dtype(be.index_dtype)
        self.float = np.dtype(str(slots[0][1].params[slots[0][2]].dtype).rpartition(".")[2])
        model.optimizer.init_state(self.paths, [owner.params[key] for _, owner, key in slots])
        self.program = be.library.compile(self._pure, donate=(0,))
        self.epoch_program: Any = None

    def begin_epoch(self, order: np.ndarray | None) -> None:
        self.order = order  # stays on the host: each step sends its rows

    def __call__(self, start: int, stop: int, share: float, sums: dict[str, Any]) -> dict[str, Any]:
        opt = self.model.optimizer
        rows = np.arange(start, stop) if self.order is None else self.order[start:stop]
        new, sums = self._run(self.program, opt.t + 1, opt.current_lr, self.strategy.per_step(),
                              self.data, rows.astype(self.index), share, sums)
        self._keep(new, 1)
        return sums

    def whole_epoch(self, n: int, batch_size: int,
                    weights: np.ndarray | None) -> tuple[dict[str, Any], float] | None:
        """Every full batch of the epoch in one program (a scan over them), then a short last batch:
        ``(sums, weight of the epoch)``. Only on one process (ranks exchange per batch)."""
        if type(self.strategy) is not Local:
            return None
        full = n // batch_size
        rows = np.arange(n) if self.order is None else self.order
        shares = (np.full(n // batch_size + (n % batch_size > 0), float(batch_size)) if weights is None else
                  np.add.reduceat(weights[rows], np.arange(0, n, batch_size)))
        if n % batch_size:
            shares[-1] = n % batch_size if weights is None else shares[-1]
        sums: dict[str, Any] = {}
        if full:
            if self.epoch_program is None:
                self.epoch_program = self.backend.library.compile(self._epoch, donate=(0,))
            opt = self.model.optimizer
            new, sums = self._run(self.epoch_program, opt.t + 1, opt.current_lr, self.data,
                                  rows[:full * batch_size].reshape(full, batch_size).astype(self.index),
                                  shares[:full].astype(self.float))
            self._keep(new, full)
        if n % batch_size:
            sums = self(full * batch_size, n, float(shares[-1]), sums)
        return sums, float(shares.sum())

    def _run(self, program: Any, *args: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        opt = self.model.optimizer
        state = ([owner.params[key] for _, owner, key in self.slots],
                 [owner.buffers[key] for _, owner, key in self.buffers],
                 {path: opt.state[path] for path in self.paths}, self.backend.generator())
        _libraries._tracing_device_name = self.backend.device_name
        try:
            return program(state, *args)
        finally:
            _libraries._tracing_device_name = None

    def _keep(self, new: tuple[Any, ...], steps: int) -> None:
        """Put a program's results into the model's dicts: they hold the live arrays."""
        params, buffers, states, key = new
        for (_, owner, name), w in zip(self.slots, params, strict=True):
            owner.params.store(name, w)
        for (_, owner, name), b in zip(self.buffers, buffers, strict=True):
            owner.buffers[name] = b
        self.model.optimizer.state.update(states)
        self.model.optimizer.t += steps
        _device_rngs[self.rng] = key

    def _epoch(self, state: tuple[Any, ...], t: Any, lr: Any, data: tuple[Any, Any, Any], rows: Any,
               shares: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The traced epoch: :meth:`_pure` for each row of ``rows`` (a batch), carrying the state."""
        library = self.backend.library
        # The sums start at zeros of the shapes one step gives (the first batch starts them otherwise).
        _, shapes = library.shapes(self._pure, state, t, lr, {}, data, rows[0], shares[0], {})
        xp = self.backend.xp
        zeros = {name: xp.zeros(shape.shape, dtype=shape.dtype) for name, shape in shapes.items()}

        def body(carry: tuple[Any, ...], batch: tuple[Any, Any]) -> tuple[tuple[Any, ...], None]:
            state, t, sums = carry
            state, sums = self._pure(state, t, lr, {}, data, batch[0], batch[1], sums)
            return (state, t + 1, sums), None

        (state, _, sums), _ = library.scan(body, (state, t, zeros), (rows, shares))
        return state, sums

    def _pure(self, state: tuple[Any, ...], t: Any, lr: Any, per_step: dict[str, Any],
              data: tuple[Any, Any, Any], rows: Any, share: Any,
              sums: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The traced step: binds its arguments into the model, runs :func:`train_step`, returns
        what the step changed. Runs only while the backend traces (once per batch shape)."""
        model, opt = self.model, self.model.optimizer
        params, buffers, states, key = state
        for (_, owner, name), w in zip(self.slots, params, strict=True):
            owner.params.store(name, w)
        for (_, owner, name), b in zip(self.buffers, buffers, strict=True):
            owner.buffers[name] = b
        opt.state.update({path: dict(s) for path, s in states.items()})
        _device_rngs[self.rng] = key
        keep = [layer for _, layer in model.layers_by_path()] + [model.loss]
        saved = [(obj, dict(vars(obj)), dict(obj.grads) if hasattr(obj, "grads") else None) for obj in keep]
        host = {name: getattr(self.strategy, name) for name in per_step}
        vars(self.strategy).update(per_step)  # e.g. this rank's share of the batch, traced
        x, y, w = data
        xb, yb = batches.each(x, lambda a: fast.take(a, rows)), fast.take(y, rows)
        wb = None if w is None else fast.take(w, rows)
        try:
            with opt.traced(t - 1, lr):
                loss, out = train_step(model, xb, yb, wb, self.strategy, self.slots)
            new = ([owner.params[name] for _, owner, name in self.slots],
                   [owner.buffers[name] for _, owner, name in self.buffers],
                   {path: dict(opt.state[path]) for path in self.paths}, _device_rngs[self.rng])
            return new, accumulate(sums, loss, share, out, yb, self.metrics, model.loss)
        finally:
            for obj, attributes, grads in saved:  # no traced value outlives the trace in a layer
                vars(obj).clear()
                vars(obj).update(attributes)
                if grads is not None:
                    obj.grads.clear()
                    obj.grads.update(grads)
            vars(self.strategy).update(host)

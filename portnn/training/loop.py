"""The training loop behind :meth:`portnn.Sequential.fit` and :meth:`~portnn.Sequential.evaluate`.

One epoch: batches of one host-drawn permutation, :func:`train_step` on each,
the loss and every metric summed on the device, one read-back of those sums
at the end of the epoch, then the display and the callbacks. Nothing inside
an epoch reads from the device (the optional progress bar excepted, at most a
few times per second).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import metrics as metrics_module
from ..backends import init_rng
from . import backup as _backup
from . import batches, runner
from . import callbacks as callbacks_module
from . import inputs as _inputs
from .progress import Progress
from .runner import _add
from .step import LOCAL, Local

__all__ = ["History", "evaluate", "fit", "sample_weights"]


class History(dict):
    """Per-epoch Python floats: ``h["loss"]``, ``h["accuracy"]``, ``h["val_loss"]``, ..."""

    @property
    def epochs(self) -> int:
        return len(self.get("loss", []))

    def plot(self, path: Any = None) -> Any:
        """Loss and each metric against the epoch, training beside validation (needs matplotlib).

        Saves to ``path`` when given; returns the matplotlib figure.

        Example:
            >>> model.fit(x, y, epochs=20, validation_data=(xv, yv)).plot("runs/history.png")
        """
        from .plots import history

        return history(self, path)


def fit(model: Any, x: Any, y: Any, epochs: int = 1, batch_size: int | None = None,
        shuffle: bool = True, validation_data: tuple[Any, Any] | None = None, verbose: int = 1,
        callbacks: Sequence[Any] = (), class_weight: dict[int, float] | None = None,
        sample_weight: Any = None, on_nonfinite: str = "raise", strategy: Local = LOCAL,
        jit: bool | None = None, initial_epoch: int = 0) -> History:
    """Train ``model``; see :meth:`portnn.Sequential.fit` for the arguments.

    ``strategy``: how the fit is distributed (:class:`portnn.distributed.DataParallel`);
    the loop calls the same steps on the single-process :data:`LOCAL`, whose are no-ops.
    """
    owner = _owner(model, "fit")
    if model.loss is None or model.optimizer is None:
        raise ValueError(f"{owner} needs a loss and an optimizer: pass "
                         f"{type(model).__name__}(..., loss='mse', optimizer=portnn.SGD(0.1))")
    _check_values_device(model, "fit")
    batch_size = _inputs.check_fit_args(owner, epochs, batch_size, verbose, on_nonfinite, shuffle)
    _inputs.check_initial_epoch(owner, initial_epoch, epochs)
    metrics = metrics_module.get(model.metrics, model.loss)
    raw_y = y
    x, y = model.prepare_inputs(x, y)  # the checked data boundary (portnn._inputs)
    weights = sample_weights(raw_y, class_weight, sample_weight)
    if validation_data is not None:
        validation_data = _inputs.prepare_validation(model, validation_data)
    n = batches.count(x)
    batch_size = batch_size or n
    be = model.backend
    w_device = None if weights is None else be.asarray(weights, dtype=_inputs._dtype(model), copy=False)
    keys = ["loss", *metrics]
    produced = keys + [f"val_{k}" for k in keys] * (validation_data is not None)
    cbs = callbacks_module.wrap(callbacks)
    callbacks_module.check_monitors(cbs, produced)
    history = History()
    slots = model.named_parameters()
    if not slots:
        raise ValueError(f"{type(model).__name__}.fit: the model has no trainable parameter, so there "
                         "is nothing to train; add a layer with weights (e.g. portnn.Dense), or use "
                         "predict/evaluate only")
    dp = strategy
    dp.begin(n)
    run = runner.make(model, jit, (x, y, w_device), dp, slots, metrics)
    progress = Progress(verbose if dp.comm.is_main else 0, epochs, -(-n // batch_size))
    model.stop_training = False
    for cb in cbs:
        cb.set_model(model)
        cb.on_train_begin({})
    fit_args = {"epochs": epochs, "batch_size": batch_size, "samples": n, "shuffle": shuffle,
                "validation": validation_data is not None}
    initial_epoch = _backup.resume(cbs, history, fit_args, initial_epoch)  # a backup's next epoch
    # Schedules continue across fit calls and checkpoints: optimizer.epoch counts epochs done.
    first = model.optimizer.epoch - initial_epoch
    try:
        for epoch in range(initial_epoch, epochs):
            model.optimizer.epoch = first + epoch
            order = dp.shared(init_rng().permutation(n) if shuffle else None)
            run.begin_epoch(order)
            progress.epoch_begin(epoch)
            bar = progress.has_bar
            # Compiled on one process, without a per-batch display: the epoch is one program.
            whole = None if bar else run.whole_epoch(n, batch_size, weights)
            sums, weight_sum = whole or ({}, 0.0)
            for start in range(0, n, batch_size) if whole is None else ():
                stop = min(start + batch_size, n)  # the Array API leaves slicing past the end undefined
                start, stop = dp.shard(start, stop, order, weights)  # this rank's part of the batch
                if start == stop:  # none of a short last batch: still join the gradient sum
                    dp.empty_step()
                    model.optimizer.step(slots)
                    continue
                # The batch loss is a (weighted) mean: weigh it by the batch's share (host floats).
                share = stop - start if weights is None else float(
                    weights[start:stop].sum() if order is None else weights[order[start:stop]].sum())
                weight_sum += share
                sums = run(start, stop, share, sums)
                if bar:
                    progress.step(sums["__loss"], weight_sum)
            model.optimizer.epoch = first + epoch + 1
            sums = dp.end_epoch({"__loss": sums.pop("__loss", None), "__weight": weight_sum, **sums})
            total, weight_sum = sums.pop("__loss"), sums.pop("__weight")
            logs = _read_back(total, weight_sum, sums, n)
            if validation_data is not None:
                val = dp.evaluate(*validation_data, lambda xs, ys: _evaluate(model, xs, ys, metrics))
                logs.update({f"val_{k}": v for k, v in val.items()})
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
            progress.epoch_end(epoch, logs)
            if _inputs.stop_on_nonfinite(owner, history, logs, epoch + 1, epochs, on_nonfinite):
                break
            for cb in cbs:
                cb.on_epoch_end(epoch, logs)
            _backup.after_epoch(cbs, epoch)  # after every callback: their states of this epoch
            if model.stop_training:
                break
    finally:
        progress.close()
        dp.close()
    final = {k: v[-1] for k, v in history.items()}
    for cb in cbs:
        cb.on_train_end(final)
    return history


def evaluate(model: Any, x: Any, y: Any, batch_size: int | None = None,
             strategy: Local = LOCAL) -> dict[str, float]:
    """Mean loss and metrics on ``(x, y)`` as floats; see :meth:`portnn.Sequential.evaluate`.

    ``strategy.evaluate`` splits the work over the ranks of a distributed one.
    """
    if model.loss is None:
        raise ValueError(f"{_owner(model, 'evaluate')} needs a loss")
    _check_values_device(model, "evaluate")
    metrics = metrics_module.get(model.metrics, model.loss)
    x, y = model.prepare_inputs(x, y)
    return strategy.evaluate(x, y, lambda xs, ys: _evaluate(model, xs, ys, metrics=metrics,
                                                            batch_size=batch_size))


def _evaluate(model: Any, x: Any, y: Any, metrics: dict[str, Any],
              batch_size: int | None = None) -> dict[str, float]:
    n = batches.count(x)
    step = n if batch_size is None else batch_size
    total: Any = None
    sums: dict[str, Any] = {}
    for s in range(0, n, step):
        xb, yb = batches.rows(x, s, min(s + step, n)), y[s:min(s + step, n), ...]
        out = model.forward(xb)
        total = _add(total, model.loss(out, yb) * yb.shape[0])
        for name, metric in metrics.items():
            sums[name] = _add(sums.get(name), metric(out, yb, model.loss))
    return _read_back(total, n, sums, n)


def sample_weights(y: Any, class_weight: dict[int, float] | None,
                   sample_weight: Any) -> np.ndarray | None:
    """The per-sample weights on the host (float64), built once per ``fit``; ``None`` for none.

    ``class_weight`` maps a class to a weight; a sample's class is its integer
    label, the arg-max of a one-hot row, or ``y > 0.5`` for a single binary
    column. ``sample_weight`` is one non-negative weight per sample; with both,
    the weights multiply (as in Keras).
    """
    if class_weight is None and sample_weight is None:
        return None
    host_y = metrics_module.host(y)
    n = host_y.shape[0]
    w = np.ones(n)
    if sample_weight is not None:
        sw = metrics_module.host(sample_weight).astype(np.float64)
        if sw.shape != (n,):
            raise ValueError(f"fit: sample_weight must have shape ({n},) (one weight per sample), "
                             f"got {sw.shape}")
        w *= sw
    if class_weight is not None:
        if host_y.ndim == 1:
            labels = host_y
        elif host_y.ndim == 2 and host_y.shape[1] == 1:
            labels = host_y[:, 0] > 0.5
        else:
            labels = host_y.reshape(n, -1).argmax(axis=1)
        labels = np.asarray(labels).astype(np.int64)
        missing = sorted(set(np.unique(labels).tolist()) - {int(k) for k in class_weight})
        if missing:
            raise ValueError(f"fit: class_weight has no weight for classes {missing}; give every "
                             f"class in y a weight (e.g. {{{missing[0]}: 1.0, ...}})")
        table = {int(k): float(v) for k, v in class_weight.items()}
        w *= np.array([table[c] for c in labels.tolist()], np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise ValueError("fit: sample weights must be finite, >= 0 and not all 0")
    return w


def _owner(model: Any, method: str) -> str:
    """``"Sequential.fit"``, ``"Model.evaluate"``, ...: the method messages name."""
    return f"{type(model).__name__}.{method}"


def _check_values_device(model: Any, where: str) -> None:
    if model.backend.device_name == "meta":
        raise ValueError(f"{_owner(model, where)}: torch's 'meta' device holds shapes, not values, so "
                         "it cannot train or report a loss; use it for layer shape checks only "
                         "and train on 'cpu' or 'cuda'")


def _read_back(total: Any, weight: float, sums: dict[str, Any], n: int) -> dict[str, float]:
    """The one host read of an epoch: mean loss and metrics from the on-device sums."""
    logs = {"loss": float(total) / weight}
    logs.update({name: float(value) / n for name, value in sums.items() if value is not None})
    return logs

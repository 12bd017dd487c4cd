"""Callbacks for :meth:`portnn.Sequential.fit`, with Keras' names and semantics.

``fit`` calls ``on_train_begin(logs)``, then ``on_epoch_end(epoch, logs)``
after each epoch with that epoch's floats (``loss``, metrics, ``val_...``),
then ``on_train_end(logs)``. Setting ``model.stop_training = True`` stops
after the current epoch. Unlike Keras there is no per-batch hook: portnn
reads nothing back from the device inside an epoch.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable
from typing import Any

__all__ = ["CSVLogger", "Callback", "EarlyStopping", "FunctionCallback", "LambdaCallback",
           "ModelCheckpoint", "ReduceLROnPlateau"]

Logs = dict[str, float]


class Callback:
    """Base class: override any of the hooks; ``self.model`` is the model being trained."""

    model: Any = None

    def set_model(self, model: Any) -> None:
        self.model = model

    def on_train_begin(self, logs: Logs | None = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        pass

    def on_train_end(self, logs: Logs | None = None) -> None:
        pass

    def get_state(self) -> dict[str, Any] | None:
        """What :class:`BackupAndRestore` saves of this callback (JSON-able values, NumPy arrays);
        ``None``: it has no state."""
        return None

    def set_state(self, state: dict[str, Any] | None) -> None:
        """Put back a :meth:`get_state` (called after ``on_train_begin`` when a fit resumes)."""


class FunctionCallback(Callback):
    """A plain function ``f(model, epoch, logs)`` after each epoch; returning ``True`` stops training."""

    def __init__(self, fn: Callable[[Any, int, Logs], Any]) -> None:
        self.fn = fn

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if self.fn(self.model, epoch, logs) is True:
            self.model.stop_training = True


class LambdaCallback(Callback):
    """Callbacks from functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``."""

    def __init__(self, on_train_begin: Callable[[Logs | None], Any] | None = None,
                 on_epoch_end: Callable[[int, Logs], Any] | None = None,
                 on_train_end: Callable[[Logs | None], Any] | None = None) -> None:
        self._begin, self._epoch, self._end = on_train_begin, on_epoch_end, on_train_end

    def on_train_begin(self, logs: Logs | None = None) -> None:
        if self._begin:
            self._begin(logs)

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if self._epoch:
            self._epoch(epoch, logs)

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self._end:
            self._end(logs)


class _Monitor(Callback):
    """Shared by the callbacks that watch one logged value for improvement."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{type(self).__name__}: mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(min_delta)
        self.best = math.nan

    @property
    def _sign(self) -> float:
        """+1 where larger is better (``max``, or ``auto`` on an accuracy), -1 otherwise."""
        mode = self.mode
        if mode == "auto":
            mode = "max" if "acc" in self.monitor else "min"
        return 1.0 if mode == "max" else -1.0

    def _improved(self, current: float) -> bool:
        if math.isnan(self.best):
            return True
        return self._sign * (current - self.best) > self.min_delta

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.best = math.nan

    def get_state(self) -> dict[str, Any] | None:
        return {"best": self.best}

    def set_state(self, state: dict[str, Any] | None) -> None:
        self.best = float(state["best"])


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved for ``patience`` epochs.

    With ``restore_best_weights=True`` the parameters and buffers of the best
    epoch are kept as device copies and put back at the end of training (as
    Keras 3, also when training ran to its last epoch).

    Example:
        >>> model.fit(x, y, epochs=100, validation_data=(xv, yv),
        ...           callbacks=[portnn.callbacks.EarlyStopping(patience=3, restore_best_weights=True)])
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 mode: str = "auto", restore_best_weights: bool = False) -> None:
        super().__init__(monitor, mode, min_delta)
        self.patience, self.restore_best_weights = patience, restore_best_weights
        self.wait, self.stopped_epoch, self.best_epoch = 0, None, None
        self.best_weights: list[dict[str, dict[str, Any]]] | None = None

    def on_train_begin(self, logs: Logs | None = None) -> None:
        super().on_train_begin(logs)
        self.wait, self.stopped_epoch, self.best_epoch, self.best_weights = 0, None, None, None

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        current = logs[self.monitor]
        self.wait += 1
        if self._improved(current):
            self.best, self.best_epoch, self.wait = current, epoch, 0
            if self.restore_best_weights:
                self.best_weights = _copy_weights(self.model)
            return
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            for path, layer, key in self.model.named_parameters():
                layer.params.store(key, self.best_weights["params"][path])
            for path, layer, key in self.model.named_buffers():
                layer.buffers[key] = self.best_weights["buffers"][path]
            self.best_weights = None

    def get_state(self) -> dict[str, Any] | None:
        from ..backends import to_numpy

        weights = None if self.best_weights is None else {
            kind: {path: to_numpy(a) for path, a in arrays.items()}
            for kind, arrays in self.best_weights.items()}
        return {**super().get_state(), "wait": self.wait, "stopped_epoch": self.stopped_epoch,
                "best_epoch": self.best_epoch, "best_weights": weights}

    def set_state(self, state: dict[str, Any] | None) -> None:
        super().set_state(state)
        self.wait, self.stopped_epoch = state["wait"], state["stopped_epoch"]
        self.best_epoch, weights = state["best_epoch"], state["best_weights"]
        be = self.model.backend
        self.best_weights = None if weights is None else {
            kind: {path: be.asarray(a, dtype=str(a.dtype)) for path, a in arrays.items()}
            for kind, arrays in weights.items()}


def _copy_weights(model: Any) -> dict[str, dict[str, Any]]:
    """On-device copies of every parameter and buffer, by path (nothing goes to the host)."""
    from ..backends import array_namespace

    def copy(a: Any) -> Any:
        return array_namespace(a).asarray(a, copy=True)

    return {"params": {path: copy(layer.params[key]) for path, layer, key in model.named_parameters()},
            "buffers": {path: copy(layer.buffers[key]) for path, layer, key in model.named_buffers()}}


class ModelCheckpoint(_Monitor):
    """Save the model after each epoch (``save_best_only``: only when ``monitor`` improves).

    ``path`` may hold ``{epoch}`` (1-based) and logged keys, e.g.
    ``"runs/model-{epoch:02d}-{val_loss:.3f}.npz"``. Writing goes through
    :meth:`Sequential.save`, so it is atomic.
    """

    def __init__(self, path: str | os.PathLike[str], monitor: str = "val_loss",
                 save_best_only: bool = False, mode: str = "auto", verbose: int = 0) -> None:
        super().__init__(monitor, mode, 0.0)
        self.path, self.save_best_only, self.verbose = os.fspath(path), save_best_only, verbose
        self.saved: list[str] = []

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if self.save_best_only:
            if not self._improved(logs[self.monitor]):
                return
            self.best = logs[self.monitor]
        path = self.path.format(epoch=epoch + 1, **logs)
        self.model.save(path)
        self.saved.append(path)
        if self.verbose:
            print(f"ModelCheckpoint: saved {path} ({self.monitor}={logs.get(self.monitor)})")

    def get_state(self) -> dict[str, Any] | None:
        return {**super().get_state(), "saved": list(self.saved)}

    def set_state(self, state: dict[str, Any] | None) -> None:
        super().set_state(state)
        self.saved = list(state["saved"])


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by ``factor`` after ``patience`` epochs without improvement.

    The optimizer's ``lr`` must be a float (as in Keras, a schedule is an
    error); the reduced rate is the optimizer's own ``lr``, so it is saved in
    checkpoints and a loaded model continues from it.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 min_lr: float = 0.0, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, verbose: int = 0) -> None:
        if not 0.0 < factor < 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must lie in (0, 1), got {factor}")
        super().__init__(monitor, mode, min_delta)
        self.factor, self.patience, self.min_lr = factor, patience, min_lr
        self.cooldown, self.verbose = cooldown, verbose
        self.wait = self.cooldown_left = 0

    def on_train_begin(self, logs: Logs | None = None) -> None:
        super().on_train_begin(logs)
        self.wait = self.cooldown_left = 0
        if callable(self.model.optimizer.lr):
            raise ValueError(f"ReduceLROnPlateau: the optimizer's lr is a schedule "
                             f"({type(self.model.optimizer.lr).__name__}); use a float lr or no "
                             "ReduceLROnPlateau")

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        current = logs[self.monitor]
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if self._improved(current):
            self.best, self.wait = current, 0
        elif self.cooldown_left <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                opt = self.model.optimizer
                new = max(float(opt.lr) * self.factor, self.min_lr)
                if new < float(opt.lr):
                    opt.lr = new
                    if self.verbose:
                        print(f"ReduceLROnPlateau: epoch {epoch + 1}: lr reduced to {new:g}")
                self.cooldown_left, self.wait = self.cooldown, 0

    def get_state(self) -> dict[str, Any] | None:
        # The reduced lr is the optimizer's own: BackupAndRestore saves it with the optimizer.
        return {**super().get_state(), "wait": self.wait, "cooldown_left": self.cooldown_left}

    def set_state(self, state: dict[str, Any] | None) -> None:
        super().set_state(state)
        self.wait, self.cooldown_left = state["wait"], state["cooldown_left"]


class CSVLogger(Callback):
    """Append one row per epoch (``epoch`` and every logged value) to a CSV file."""

    def __init__(self, path: str | os.PathLike[str], separator: str = ",", append: bool = False) -> None:
        self.path, self.separator, self.append = os.fspath(path), separator, append
        self._keys: list[str] | None = None

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._keys = None
        if not self.append:
            open(self.path, "w").close()

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        new_file = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        with open(self.path, "a", newline="") as f:
            writer = csv.writer(f, delimiter=self.separator)
            if self._keys is None:
                self._keys = list(logs)
                if new_file:
                    writer.writerow(["epoch", *self._keys])
            writer.writerow([epoch, *(logs.get(k, "") for k in self._keys)])

    def get_state(self) -> dict[str, Any] | None:
        return {"keys": self._keys}

    def set_state(self, state: dict[str, Any] | None) -> None:
        # on_train_begin emptied the file unless append: then it starts again with a header.
        self._keys = state["keys"] if self.append else None


def wrap(callbacks: Any) -> list[Callback]:
    """Callbacks as :class:`Callback` objects; a plain function becomes a :class:`FunctionCallback`."""
    out = []
    for cb in callbacks or ():
        if isinstance(cb, Callback):
            out.append(cb)
        elif callable(cb):
            out.append(FunctionCallback(cb))
        else:
            raise TypeError(f"fit: callbacks must be Callback objects or functions f(model, epoch, "
                            f"logs), got {type(cb).__name__}")
    return out


def check_monitors(callbacks: list[Callback], produced: list[str]) -> None:
    """A clear error, before the first epoch, for a monitored key that ``fit`` will not log."""
    for cb in callbacks:
        monitor = getattr(cb, "monitor", None)
        if monitor is not None and monitor not in produced:
            hint = " (pass validation_data= to get val_ keys)" if monitor.startswith("val_") else ""
            raise ValueError(f"{type(cb).__name__}: monitor={monitor!r} is not logged by this fit; "
                             f"it logs {produced}{hint}")


"""Training that survives being killed: :class:`BackupAndRestore` (Keras' name and meaning).

At the end of every epoch (or every ``save_freq`` epochs) the callback writes one
file, ``<backup_dir>/portnn-backup.npz``, atomically (a temporary file beside it,
fsync, rename: :func:`portnn.training.checkpoints.write_atomic`), holding all
that the training needs to go on as if it had never stopped:

- the checkpoint entries of :func:`~portnn.training.checkpoints.save`: parameters,
  buffers, optimizer state, the architecture;
- ``__backup__``: JSON with the epoch just finished, whether a callback stopped
  the training, ``fit``'s arguments (``epochs``, ``batch_size``, the number of
  samples, ``shuffle``, whether there is validation data), the backend, the
  optimizer's ``t``, ``epoch`` (the schedule's position) and float ``lr``, the
  History so far, each callback's :meth:`~portnn.callbacks.Callback.get_state`
  and every random state (:func:`portnn.backends.rng_state`: the seed, the host
  generator of the shuffle, each device's dropout generator); arrays among
  them are entries ``b/...`` of the file, named in the JSON.

When ``fit`` starts and the file exists, everything is checked against this fit
first (another model or other arguments is a :class:`CheckpointError` naming what
differs, and nothing is changed), then put back, and training continues with the
next epoch. When training ends normally the file is deleted (``delete_checkpoint``).

Data-parallel fits: rank 0 writes (after collecting every rank's dropout
generator), every rank reads the file (so all ranks need to see ``backup_dir``)
and restores its own generator. This path is not covered by a multi-process test.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

import numpy as np

from ..backends import rng_state, set_rng_state
from . import checkpoints
from .callbacks import Callback, Logs
from .checkpoints import CheckpointError

__all__ = ["BackupAndRestore"]

FILE = "portnn-backup.npz"
FORMAT, VERSION = "portnn-backup", 1
ENTRY = "__backup__"


class BackupAndRestore(Callback):
    """Back up the whole training state after each epoch; a restarted ``fit`` continues from it.

    Args:
        backup_dir: the folder of the backup (made if missing); one fit per folder.
        save_freq: ``"epoch"`` (after every epoch) or an int ``n``: after every ``n``-th
            epoch (unlike Keras, where an int counts batches: portnn has no per-batch hook).
        delete_checkpoint: delete the backup when training ends normally.

    The same script, killed at any moment (SIGKILL, a preempted job, a Colab timeout) and
    started again, ends with the weights of a run that never stopped, bit for bit, on the
    same backend and device.

    Example:
        >>> model.fit(x, y, epochs=50, callbacks=[portnn.callbacks.BackupAndRestore("runs/backup")])
    """

    def __init__(self, backup_dir: str | os.PathLike[str], save_freq: str | int = "epoch",
                 delete_checkpoint: bool = True) -> None:
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int)
                                     or save_freq < 1):
            raise ValueError(f"BackupAndRestore: save_freq must be 'epoch' or an int >= 1 (epochs), "
                             f"got {save_freq!r}")
        self.backup_dir, self.save_freq = os.fspath(backup_dir), save_freq
        self.delete_checkpoint = bool(delete_checkpoint)
        self.path = os.path.join(self.backup_dir, FILE)
        self._fit: dict[str, Any] | None = None

    # ---------------------------------------------------------------- called by the loop

    def restore(self, callbacks: list[Callback], history: dict[str, list[float]],
                fit_args: dict[str, Any], initial_epoch: int) -> int:
        """Keep this fit's context; if a backup exists, check it and put it all back.

        Returns the first epoch to train (``fit_args["epochs"]`` when the backed-up run had
        finished or was stopped by a callback).
        """
        self._fit = {"callbacks": callbacks, "history": history, "args": fit_args}
        if not os.path.exists(self.path):
            return initial_epoch
        model = self.model
        data, meta = checkpoints._read(self.path)
        if ENTRY not in data:
            raise CheckpointError(f"{self.path} is a portnn checkpoint but not a BackupAndRestore "
                                  "backup; remove it or use another backup_dir")
        state = json.loads(str(data.pop(ENTRY)))
        if state.get("format") != FORMAT or state.get("version") != VERSION:
            raise CheckpointError(f"{self.path}: not a portnn backup of version {VERSION}")
        state = _unpack(state, data)
        self._check(state, meta, data, callbacks, fit_args)
        # Every check has passed: from here on everything is put back.
        be, opt = model.backend, model.optimizer
        with be.activate():
            for kind, slots in (("param", model.named_parameters()), ("buffer", model.named_buffers())):
                for path, layer, key in slots:
                    value = data[checkpoints._key(kind, path)]
                    array = be.asarray(value, dtype=str(value.dtype))
                    if kind == "param":
                        layer.params.store(key, array)
                    else:
                        layer.buffers[key] = array
            opt.state.clear()
            for name, value in data.items():
                if name.startswith("opt/"):
                    owner, _, leaf = name[len("opt/"):].rpartition("/")
                    opt.state.setdefault(owner, {})[leaf] = be.asarray(value, dtype=str(value.dtype))
        saved_opt = state["optimizer"]
        opt.t, opt.epoch = int(saved_opt["t"]), int(saved_opt["epoch"])
        if saved_opt["lr"] is not None:
            opt.lr = float(saved_opt["lr"])
        history.clear()
        history.update({k: list(v) for k, v in state["history"].items()})
        for cb, (_, saved) in zip(_others(callbacks), state["callbacks"], strict=True):
            cb.set_state(saved)
        comm = model.strategy.comm
        rngs = state["rng"]
        set_rng_state(rngs[comm.rank] if isinstance(rngs, list) else rngs)
        return fit_args["epochs"] if state["stopped"] else state["epoch"] + 1

    def after_epoch(self, epoch: int) -> None:
        """After every callback's ``on_epoch_end``: write the backup if this epoch is one to save."""
        if self._fit is None:
            raise RuntimeError("BackupAndRestore runs inside a model's fit only")
        if self.save_freq != "epoch" and (epoch + 1) % self.save_freq:
            return
        model, fit = self.model, self._fit
        opt, comm = model.optimizer, model.strategy.comm
        rngs: Any = rng_state()
        if comm.size > 1:  # every rank draws its own dropout masks: rank 0 keeps them all
            rngs = [comm.broadcast_object(rngs, root=r) for r in range(comm.size)]
        if not comm.is_main:
            comm.barrier()
            return
        entries = checkpoints.entries(model)
        state = {
            "format": FORMAT, "version": VERSION, "epoch": epoch, "stopped": bool(model.stop_training),
            "fit": fit["args"], "backend": str(model.backend), "ranks": comm.size,
            "optimizer": {"t": int(opt.t), "epoch": int(opt.epoch),
                          "lr": None if callable(opt.lr) else float(opt.lr)},
            "history": dict(fit["history"]),
            "callbacks": [[type(cb).__name__, cb.get_state()] for cb in _others(fit["callbacks"])],
            "rng": rngs,
        }
        entries[ENTRY] = np.array(json.dumps(_pack(state, "b", entries)))
        os.makedirs(self.backup_dir, exist_ok=True)
        checkpoints.write_atomic(self.path, entries)
        comm.barrier()

    def on_train_end(self, logs: Logs | None = None) -> None:
        comm = self.model.strategy.comm
        if self.delete_checkpoint and comm.is_main:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
        comm.barrier()
        self._fit = None

    # ---------------------------------------------------------------- checks

    def _check(self, state: dict[str, Any], meta: dict[str, Any], data: dict[str, np.ndarray],
               callbacks: list[Callback], fit_args: dict[str, Any]) -> None:
        """Raise :class:`CheckpointError` naming the first thing that differs from this fit."""
        where = f"BackupAndRestore: the backup {self.path}"
        model = self.model
        if state["backend"] != str(model.backend):
            raise CheckpointError(f"{where} was made on {state['backend']}, this fit runs on "
                                  f"{model.backend}; its random states continue only there")
        diff = [f"{k}={state['fit'].get(k)!r} there, {v!r} here" for k, v in fit_args.items()
                if state["fit"].get(k) != v]
        if diff:
            raise CheckpointError(f"{where} comes from a fit with other arguments: {'; '.join(diff)}. "
                                  "Call fit as the backed-up run did, or remove the backup")
        expected = {checkpoints._key(kind, path): getattr(layer, store)[key]
                    for kind, store, slots in (("param", "params", model.named_parameters()),
                                               ("buffer", "buffers", model.named_buffers()))
                    for path, layer, key in slots}
        saved = {name for name in data if name.startswith(("param/", "buffer/"))}
        missing, extra = sorted(set(expected) - saved), sorted(saved - set(expected))
        if missing or extra:
            raise CheckpointError(f"{where} is of another model: this model has {missing or 'no'} "
                                  f"entries the backup lacks, the backup has {extra or 'no'} this "
                                  "model lacks")
        for name, like in expected.items():
            value = data[name]
            dtype = str(like.dtype).rpartition(".")[2]  # torch.float32 -> float32
            if tuple(value.shape) != tuple(like.shape) or str(value.dtype) != dtype:
                raise CheckpointError(f"{where} is of another model: {name!r} is {value.dtype}"
                                      f"{tuple(value.shape)} there, {like.dtype}{tuple(like.shape)} here")
        params = {path for path, _, _ in model.named_parameters()}
        for name in data:
            if name.startswith("opt/") and name[len("opt/"):].rpartition("/")[0] not in params:
                raise CheckpointError(f"{where}: optimizer state {name!r} belongs to no parameter "
                                      "of this model")
        layers = [type(layer).__name__ for layer in model.layers]
        saved_layers = [entry["class"].rpartition(".")[2] for entry in meta["layers"]]
        if layers != saved_layers:
            raise CheckpointError(f"{where} is of another model: layers {saved_layers} there, "
                                  f"{layers} here")
        names = [type(cb).__name__ for cb in _others(callbacks)]
        saved_names = [name for name, _ in state["callbacks"]]
        if names != saved_names:
            raise CheckpointError(f"{where} comes from a fit with other stateful callbacks: {saved_names} "
                                  f"there, {names} here (their states are restored in order)")
        ranks = model.strategy.comm.size
        if state["ranks"] != ranks:
            raise CheckpointError(f"{where} was written by a fit on {state['ranks']} processes, "
                                  f"this one runs on {ranks}")


def resume(callbacks: list[Callback], history: dict[str, list[float]], fit_args: dict[str, Any],
           initial_epoch: int) -> int:
    """For ``fit``, after every ``on_train_begin``: the first epoch to train (a backup's next)."""
    backups = [cb for cb in callbacks if isinstance(cb, BackupAndRestore)]
    if len(backups) > 1:
        raise ValueError("fit: more than one BackupAndRestore callback; pass one")
    for cb in backups:
        initial_epoch = cb.restore(callbacks, history, fit_args, initial_epoch)
    return initial_epoch


def after_epoch(callbacks: list[Callback], epoch: int) -> None:
    """For ``fit``, after every ``on_epoch_end``: the backup of this epoch (when one is due)."""
    for cb in callbacks:
        if isinstance(cb, BackupAndRestore):
            cb.after_epoch(epoch)


def _others(callbacks: list[Callback]) -> list[Callback]:
    """The callbacks with a state to back up, in order (stateless ones may differ between runs)."""
    return [cb for cb in callbacks if not isinstance(cb, BackupAndRestore) and cb.get_state() is not None]


def _pack(obj: Any, prefix: str, arrays: dict[str, np.ndarray]) -> Any:
    """``obj`` with each NumPy array replaced by ``{"__array__": name}`` and stored in ``arrays``."""
    if isinstance(obj, np.ndarray):
        arrays[prefix] = obj
        return {"__array__": prefix}
    if isinstance(obj, dict):
        return {str(k): _pack(v, f"{prefix}/{k}", arrays) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_pack(v, f"{prefix}/{i}", arrays) for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _unpack(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__array__"}:
            return arrays.pop(obj["__array__"])
        return {k: _unpack(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unpack(v, arrays) for v in obj]
    return obj

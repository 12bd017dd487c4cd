"""The model base: what every trainable network shares (fit, predict, evaluate, save, ...).

A model is a :class:`~portnn.layers.Layer` made of layers (its children) plus a
loss, an optimizer and metrics. Subclasses give ``forward``, ``backward``,
``children`` and ``layers``; the loop (:mod:`portnn.training`), checkpoints and
summaries work on any of them through this class.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from .. import _checks, losses, optimizers, training
from .. import distributed as _distributed
from .. import metrics as _metrics
from ..backends import Backend, get_backend, on_device
from ..layers import Layer
from ..layers.symbolic import index_reader
from ..training import History, batches
from ..training import callbacks as _callbacks
from ..training import checkpoints as _checkpoint
from ..training import inputs as _inputs
from . import summary as _summary

__all__ = ["BaseModel", "backward_use"]

Callback = _callbacks.Callback
CallbackFn = Callable[["BaseModel", int, dict[str, float]], Any]


class BaseModel(Layer):
    """Layers trained with a loss and an optimizer; the base of :class:`~portnn.Sequential`.

    Without a loss and an optimizer a model is a plain layer, and nests in others.
    """

    layers: list[Layer]

    def __getstate__(self) -> dict[str, Any]:
        # Compiled programs (kept between fits, portnn.training.runner) are not copied or pickled.
        return {k: v for k, v in vars(self).items() if k != "_compiled"}

    def __init__(self, loss: str | losses.Loss | None = None,
                 optimizer: str | optimizers.Optimizer | None = None,
                 backend: str | Backend | None = None, device: str | None = None,
                 metrics: Sequence[str] | None = None) -> None:
        super().__init__()
        self.metrics = None if metrics is None else list(metrics)
        self.stop_training = False  # a callback sets it to end fit after the current epoch
        self.strategy = _distributed.LOCAL  # how the fit in progress is distributed (DataParallel)
        self.input_shape: tuple[int, ...] | None = None  # one sample's, as fit/predict last saw
        self.loss = None if loss is None else losses.get(loss)
        self.optimizer = None if optimizer is None else optimizers.get(optimizer)
        if self.loss is not None:
            _metrics.get(self.metrics, self.loss)  # unknown names fail here, not in fit
        if backend is not None or device is not None:
            self.to(backend, device)
        placed = {str(layer.backend) for _, layer in self.layers_by_path() if layer.params}
        if len(placed) > 1:
            raise ValueError(f"{type(self).__name__}: the layers' parameters live on different "
                             f"backends: {sorted(placed)}; pass backend= to move them all to one")

    def input_specs(self) -> list[tuple[tuple[int | None, ...] | None, Layer | None]]:
        """Per input: one sample's shape (``None``: not fixed by the model) and the
        :class:`~portnn.Embedding` it goes into first (``None``: the input is features)."""
        return [(None, index_reader(self.layers[0]) if self.layers else None)]

    @classmethod
    def rebuild(cls, layers: list[Layer], graph: dict[str, Any] | None = None) -> BaseModel:
        """The model a checkpoint describes, from its rebuilt ``layers`` (and ``graph``, for a
        :class:`~portnn.Model`)."""
        return cls(layers)

    # ------------------------------------------------------------------ placement

    @property
    def backend(self) -> Backend:
        """The backend the parameters live on (the active one for a parameter-free model)."""
        return super().backend or get_backend()

    def to(self, backend: str | Backend | None = None, device: str | None = None,
           dtype: str | None = None) -> BaseModel:
        """Move parameters, buffers and optimizer state to another backend/device, in place."""
        target = get_backend(backend, device)
        super().to(target, dtype=dtype)
        if self.optimizer is not None:
            for state in self.optimizer.state.values():
                for key, value in state.items():
                    state[key] = target.move(value, dtype)
        return self

    # ------------------------------------------------------------------ one step

    @on_device
    def train_step(self, x: Any, y: Any, weight: Any = None) -> tuple[Any, Any]:
        """One forward, backward and update on a batch already on the device.

        Returns the batch loss and the number correct (or ``None``) as 0-d
        device arrays; nothing is read back to the host. ``weight``: optional
        per-sample weights (see :class:`portnn.losses.Loss`).
        """
        loss, out = training.train_step(self, x, y, weight)
        return loss, self.loss.correct(out, y)

    def prepare_inputs(self, x: Any, *y: Any) -> Any:
        """The checked data boundary (:mod:`portnn.training.inputs`): ``x`` or ``(x, y)`` on the device."""
        moved = _inputs.prepare(self, x, *y)
        features = moved[0] if y else moved
        if not isinstance(features, list):  # a graph model knows its input shapes
            self.input_shape = tuple(features.shape[1:])  # for summary()
        return moved

    # ------------------------------------------------------------------ training

    @on_device
    def fit(self, x: Any, y: Any, epochs: int = 1, batch_size: int | None = None,
            shuffle: bool = True, validation_data: tuple[Any, Any] | None = None,
            verbose: int = 1, callbacks: Sequence[Callback | CallbackFn] = (),
            class_weight: dict[int, float] | None = None, sample_weight: Any = None,
            on_nonfinite: str = "raise",
            distributed: bool | _distributed.Communicator | None = None,
            jit: bool | None = None, initial_epoch: int = 0) -> History:
        """Train for ``epochs`` passes over ``(x, y)``; the loop is :func:`portnn.training.fit`.

        Args:
            x, y: inputs and targets (NumPy arrays are moved to the device once); ``x`` is a
                list of arrays, one per input, for a :class:`~portnn.Model` of several inputs.
            epochs: passes over the data.
            batch_size: samples per update; ``1`` is per-sample training,
                ``None`` the full batch.
            shuffle: reshuffle each epoch from portnn's seeded generator.
            validation_data: ``(x_val, y_val)`` evaluated after each epoch
                (logged as ``val_loss``, ``val_accuracy``, ...).
            verbose: 0 silent; 1 a line per epoch (and a tqdm bar over the
                batches when stderr is a terminal and tqdm is installed);
                ``n`` > 1 a line every n-th epoch (and the first and last).
            callbacks: :mod:`portnn.callbacks` objects, or functions
                ``f(model, epoch, logs)`` called after each epoch (returning
                ``True`` stops training).
            class_weight: ``{class: weight}``; each sample's loss is weighted
                by its class's weight.
            sample_weight: one weight per sample (multiplies ``class_weight``).
                The loss is then the weighted mean ``sum(w_i l_i) / sum(w_i)``.
            on_nonfinite: a NaN/inf epoch loss raises
                :class:`portnn.NonFiniteLossError` (``"raise"``) or warns and
                stops (``"warn"``).
            distributed: a :mod:`portnn.distributed` communicator (``True``:
                ``init()``): every rank trains on its slice of each global
                batch of ``batch_size`` and the gradients are summed; rank 0 prints.
            jit: compile each training step into one program: ``None`` where the
                backend compiles (JAX, with ``jax.jit``), ``True`` requires it (an
                error on a backend that cannot), ``False`` runs op by op.
            initial_epoch: the epoch to start at (Keras'): ``epochs`` is the total, so the
                epochs ``initial_epoch..epochs-1`` are trained. A
                :class:`portnn.callbacks.BackupAndRestore` backup, when there is one, sets it.

        Returns:
            A :class:`History` of per-epoch floats.

        Example:
            >>> history = model.fit(x, y, epochs=20, batch_size=64, validation_data=(xv, yv),
            ...                     callbacks=[portnn.callbacks.EarlyStopping(patience=3)])
        """
        self.strategy = _distributed.DataParallel.plan(self, distributed)
        try:
            return training.fit(self, x, y, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
                                validation_data=validation_data, verbose=verbose, callbacks=callbacks,
                                class_weight=class_weight, sample_weight=sample_weight,
                                on_nonfinite=on_nonfinite, strategy=self.strategy, jit=jit,
                                initial_epoch=initial_epoch)
        finally:
            self.strategy = _distributed.LOCAL

    @on_device
    def predict(self, x: Any, batch_size: int | None = None,
                distributed: bool | _distributed.Communicator | None = None) -> Any:
        """The network's output for ``x``, as an array on the model's backend.

        Use :func:`portnn.to_numpy` to bring it to the host. ``distributed``:
        each rank predicts its part of ``x`` and every rank gets all of it.
        """
        x = self.prepare_inputs(x)
        if batch_size is not None:
            _checks.integer(f"{type(self).__name__}.predict", "batch_size", batch_size)
        comm = _distributed.resolve(distributed)
        if comm is not None:
            return _distributed.predict(self, x, comm, batch_size)
        if batch_size is None:
            return self.forward(x)
        n = batches.count(x)
        outs = [self.forward(batches.rows(x, s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
        return self.backend.xp.concat(outs, axis=0)

    @on_device
    def evaluate(self, x: Any, y: Any, batch_size: int | None = None,
                 distributed: bool | _distributed.Communicator | None = None) -> dict[str, float]:
        """Mean loss and metrics (accuracy for classification losses) on ``(x, y)``, as floats.

        ``distributed``: each rank evaluates its part and the sums are reduced.
        """
        if batch_size is not None:
            _checks.integer(f"{type(self).__name__}.evaluate", "batch_size", batch_size)
        comm = _distributed.resolve(distributed)
        strategy = _distributed.LOCAL if comm is None else _distributed.DataParallel(self, comm)
        return training.evaluate(self, x, y, batch_size=batch_size, strategy=strategy)

    @on_device
    def summary(self, input_shape: Sequence[int] | None = None) -> str:
        """Print and return a table of the layers, their output shapes and parameter counts.

        Args:
            input_shape: the shape of one sample without the batch axis, e.g.
                ``(1, 28, 28)``; default: the shape ``fit``/``predict`` last saw.

        Example:
            >>> model.summary(input_shape=(784,))
        """
        table = _summary.summary(self, input_shape)
        print(table)
        return table

    # ------------------------------------------------------------------ checkpoints

    @on_device
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write parameters, buffers, optimizer state and architecture to one ``.npz``.

        The file is plain NumPy (``np.load(path, allow_pickle=False)`` reads
        it; layout in :mod:`portnn.training.checkpoints`) and is written to ``path``
        as given (no ``.npz`` is appended). The live model is not moved. The
        file is written beside its target and renamed into place, so a failed
        save leaves an earlier file intact.

        Example:
            >>> model.save("mnist.npz")
        """
        comm = self.strategy.comm  # during a distributed fit (callbacks that save): rank 0 writes
        if comm.is_main:
            _checkpoint.save(self, path)
        comm.barrier()

    @classmethod
    def load(cls, path: str | os.PathLike[str], backend: str | Backend | None = None,
             device: str | None = None, allow_nonfinite: bool = False) -> BaseModel:
        """Rebuild a saved model and its optimizer state on the active backend or ``backend``/``device``.

        A checkpoint saved on one backend loads on any other. Raises
        ``FileNotFoundError`` for a missing file and :class:`CheckpointError`
        (naming the path) for a truncated, foreign or inconsistent one, and for
        one whose arrays hold NaN or inf unless ``allow_nonfinite=True``.

        Example:
            >>> model = portnn.Sequential.load("mnist.npz", backend="numpy")
        """
        with get_backend(backend, device).activate():
            return _checkpoint.load(cls, path, backend, device, allow_nonfinite)


def backward_use(layer: Layer, dy: Any, state: Any, seen: set[int], params_only: bool = False) -> Any:
    """``layer.backward(dy)`` for one of its uses in a model, walked from the output back.

    ``state``: that use's :meth:`~portnn.layers.Layer.call_state` (``None`` for a layer used
    once), put back first. A layer in ``seen`` had a later use: its parameter gradients are
    the sum over the uses. ``params_only``: ``backward_params`` (nobody reads ``dx``).
    """
    if state is not None:
        layer.restore_call_state(state)
    if id(layer) not in seen:  # its last use: the gradients are its own
        seen.add(id(layer))
        return layer.backward_params(dy) if params_only else layer.backward(dy)
    slots = layer.named_parameters()
    earlier = [owner.grads[key] for _, owner, key in slots]
    dx = layer.backward_params(dy) if params_only else layer.backward(dy)
    for (_, owner, key), g in zip(slots, earlier, strict=True):
        owner.grads[key] = owner.grads[key] + g
    return dx

"""Sequential: a stack of layers with fit / predict / evaluate / save / load."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from . import _checkpoint, _checks, _inputs, losses, optimizers, training
from . import callbacks as _callbacks
from . import distributed as _distributed
from . import layers as layers_module
from . import metrics as _metrics
from . import summary as _summary
from ._checkpoint import CheckpointError
from .backends import Backend, get_backend, on_device
from .layers import Layer
from .progress import format_epoch
from .training import History

__all__ = ["CheckpointError", "History", "Sequential", "format_epoch", "from_architecture"]


Callback = _callbacks.Callback
CallbackFn = Callable[["Sequential", int, dict[str, float]], Any]


class Sequential:
    """Layers applied in order, trained with a loss and an optimizer.

    Args:
        layers: the layers, first to last.
        loss: a :class:`portnn.losses.Loss` or its name (``"mse"``, ``"crossentropy"``).
        optimizer: a :class:`portnn.optimizers.Optimizer` or its name.
        backend, device: move the parameters there (default: where the layers were built).
        metrics: names from :mod:`portnn.metrics` (``"accuracy"``, ``"top5_accuracy"``,
            ``"mae"``) logged by ``fit``/``evaluate``; default ``["accuracy"]`` for a
            classification loss, none otherwise.

    Example:
        >>> model = portnn.Sequential([portnn.Dense(2, 3), portnn.Tanh(), portnn.Dense(3, 1)],
        ...                           loss="mse", optimizer=portnn.SGD(0.1))
        >>> history = model.fit(x, y, epochs=100, batch_size=1)
    """

    def __init__(self, layers: Sequence[Layer], loss: str | losses.Loss | None = None,
                 optimizer: str | optimizers.Optimizer | None = None,
                 backend: str | Backend | None = None, device: str | None = None,
                 metrics: Sequence[str] | None = None) -> None:
        self.layers = _checks.layer_list(layers)
        self.metrics = None if metrics is None else list(metrics)
        self.stop_training = False  # a callback sets it to end fit after the current epoch
        self._input_shape: tuple[int, ...] | None = None  # one sample's shape, for summary()
        self.loss = None if loss is None else losses.get(loss)
        self.optimizer = None if optimizer is None else optimizers.get(optimizer)
        if self.loss is not None:
            _metrics.get(self.metrics, self.loss)  # unknown names fail here, not in fit
        if backend is not None or device is not None:
            self.to(backend, device)
        placed = {str(layer.backend) for layer in self.layers if layer.params}
        if len(placed) > 1:
            raise ValueError(f"Sequential: the layers' parameters live on different backends: "
                             f"{sorted(placed)}; pass backend= to move them all to one")

    # ------------------------------------------------------------------ placement

    @property
    def backend(self) -> Backend:
        """The backend the parameters live on (the active one for a parameter-free model)."""
        return next((layer.backend for layer in self.layers if layer.params), None) or get_backend()

    def to(self, backend: str | Backend | None = None, device: str | None = None,
           dtype: str | None = None) -> Sequential:
        """Move parameters and optimizer state to another backend/device, in place."""
        target = get_backend(backend, device)
        for layer in self.layers:
            layer.to(target, dtype=dtype)
        if self.optimizer is not None:
            for state in self.optimizer.state.values():
                for key, value in state.items():
                    state[key] = target.move(value, dtype)
        return self

    # ------------------------------------------------------------------ forward / backward

    def forward(self, x: Any, training: bool = False) -> Any:
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, dy: Any) -> Any:
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy

    @on_device
    def train_step(self, x: Any, y: Any, weight: Any = None) -> tuple[Any, Any]:
        """One forward, backward and update on a batch already on the device.

        Returns the batch loss and the number correct (or ``None``) as 0-d
        device arrays; nothing is read back to the host. ``weight``: optional
        per-sample weights (see :class:`portnn.losses.Loss`).
        """
        loss, out = training.train_step(self, x, y, weight)
        return loss, self.loss.correct(out, y)

    # ------------------------------------------------------------------ training

    @on_device
    def fit(self, x: Any, y: Any, epochs: int = 1, batch_size: int | None = None,
            shuffle: bool = True, validation_data: tuple[Any, Any] | None = None,
            verbose: int = 1, callbacks: Sequence[Callback | CallbackFn] = (),
            class_weight: dict[int, float] | None = None, sample_weight: Any = None,
            on_nonfinite: str = "raise",
            distributed: bool | _distributed.Communicator | None = None) -> History:
        """Train for ``epochs`` passes over ``(x, y)``; the loop is :func:`portnn.training.fit`.

        Args:
            x, y: inputs and targets (NumPy arrays are moved to the device once).
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

        Returns:
            A :class:`History` of per-epoch floats.

        Example:
            >>> history = model.fit(x, y, epochs=20, batch_size=64, validation_data=(xv, yv),
            ...                     callbacks=[portnn.callbacks.EarlyStopping(patience=3)])
        """
        return training.fit(self, x, y, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
                            validation_data=validation_data, verbose=verbose, callbacks=callbacks,
                            class_weight=class_weight, sample_weight=sample_weight,
                            on_nonfinite=on_nonfinite, distributed=distributed)

    @on_device
    def predict(self, x: Any, batch_size: int | None = None,
                distributed: bool | _distributed.Communicator | None = None) -> Any:
        """The network's output for ``x``, as an array on the model's backend.

        Use :func:`portnn.to_numpy` to bring it to the host. ``distributed``:
        each rank predicts its part of ``x`` and every rank gets all of it.
        """
        x = self._to_device(x)
        if batch_size is not None:
            _checks.integer("Sequential.predict", "batch_size", batch_size)
        comm = _distributed.resolve(distributed)
        if comm is not None:
            return _distributed.predict(self, x, comm, batch_size)
        if batch_size is None:
            return self.forward(x)
        n = x.shape[0]
        outs = [self.forward(x[s:min(s + batch_size, n), ...]) for s in range(0, n, batch_size)]
        return self.backend.xp.concat(outs, axis=0)

    @on_device
    def evaluate(self, x: Any, y: Any, batch_size: int | None = None,
                 distributed: bool | _distributed.Communicator | None = None) -> dict[str, float]:
        """Mean loss and metrics (accuracy for classification losses) on ``(x, y)``, as floats.

        ``distributed``: each rank evaluates its part and the sums are reduced.
        """
        if batch_size is not None:
            _checks.integer("Sequential.evaluate", "batch_size", batch_size)
        return training.evaluate(self, x, y, batch_size=batch_size, distributed=distributed)

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

    def _to_device(self, x: Any, *y: Any) -> Any:
        """The checked data boundary (:mod:`portnn._inputs`): ``x`` or ``(x, y)`` on the device."""
        moved = _inputs.prepare(self, x, *y)
        self._input_shape = tuple((moved[0] if y else moved).shape[1:])  # for summary()
        return moved

    # ------------------------------------------------------------------ checkpoints

    @on_device
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write parameters, buffers, optimizer state and architecture to one ``.npz``.

        The file is plain NumPy (``np.load(path, allow_pickle=False)`` reads
        it; layout in :mod:`portnn._checkpoint`) and is written to ``path``
        as given (no ``.npz`` is appended). The live model is not moved. The
        file is written beside its target and renamed into place, so a failed
        save leaves an earlier file intact.

        Example:
            >>> model.save("mnist.npz")
        """
        comm = getattr(self, "_comm", None)  # set during a distributed fit (callbacks that save)
        if comm is None or comm.is_main:
            _checkpoint.save(self, path)
        if comm is not None:
            comm.barrier()

    @classmethod
    def load(cls, path: str | os.PathLike[str], backend: str | Backend | None = None,
             device: str | None = None) -> Sequential:
        """Rebuild a saved model and its optimizer state on the active backend or ``backend``/``device``.

        A checkpoint saved on one backend loads on any other. Raises
        ``FileNotFoundError`` for a missing file and :class:`CheckpointError`
        (naming the path) for a truncated, foreign or inconsistent one.

        Example:
            >>> model = portnn.Sequential.load("mnist.npz", backend="numpy")
        """
        with get_backend(backend, device).activate():
            return _checkpoint.load(cls, path, backend, device)


_ACTIVATIONS = {"relu": layers_module.ReLU, "sigmoid": layers_module.Sigmoid,
                "tanh": layers_module.Tanh, "softmax": layers_module.Softmax,
                "leaky_relu": layers_module.LeakyReLU}


def from_architecture(architecture: Sequence[dict[str, Any]], **kwargs: Any) -> Sequential:
    """Build a dense network from ``{"input_dim", "output_dim", "activation"}`` dicts.

    Example:
        >>> model = portnn.from_architecture([
        ...     {"input_dim": 2, "output_dim": 4, "activation": "relu"},
        ...     {"input_dim": 4, "output_dim": 1, "activation": "sigmoid"}], loss="binary_crossentropy")
    """
    built: list[Layer] = []
    for i, spec in enumerate(_checks.architecture(architecture)):
        built.append(layers_module.Dense(spec["input_dim"], spec["output_dim"],
                                         init=spec.get("init", "glorot_uniform")))
        act = (spec.get("activation") or "linear").lower()
        if act not in ("linear", "none"):
            if act not in _ACTIVATIONS:
                raise ValueError(f"architecture[{i}]: unknown activation {act!r}; valid: "
                                 f"{sorted(_ACTIVATIONS)} or 'linear'")
            built.append(_ACTIVATIONS[act]())
    return Sequential(built, **kwargs)

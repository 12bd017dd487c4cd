"""Sequential: a stack of layers with fit / predict / evaluate / save / load."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from . import _checkpoint, _checks, _inputs, losses, optimizers
from . import distributed as _distributed
from . import layers as layers_module
from ._checkpoint import CheckpointError
from .backends import Backend, get_backend, init_rng, on_device
from .backends import _fast as fast
from .layers import Layer

__all__ = ["CheckpointError", "History", "Sequential", "from_architecture"]


class History(dict):
    """Per-epoch Python floats: ``h["loss"]``, ``h["accuracy"]``, ``h["val_loss"]``, ..."""

    @property
    def epochs(self) -> int:
        return len(self.get("loss", []))


Callback = Callable[["Sequential", int, dict[str, float]], Any]


class Sequential:
    """Layers applied in order, trained with a loss and an optimizer.

    Args:
        layers: the layers, first to last.
        loss: a :class:`portnn.losses.Loss` or its name (``"mse"``, ``"crossentropy"``).
        optimizer: a :class:`portnn.optimizers.Optimizer` or its name.
        backend, device: move the parameters there (default: where the layers were built).

    Example:
        >>> model = portnn.Sequential([portnn.Dense(2, 3), portnn.Tanh(), portnn.Dense(3, 1)],
        ...                           loss="mse", optimizer=portnn.SGD(0.1))
        >>> history = model.fit(x, y, epochs=100, batch_size=1)
    """

    def __init__(self, layers: Sequence[Layer], loss: str | losses.Loss | None = None,
                 optimizer: str | optimizers.Optimizer | None = None,
                 backend: str | Backend | None = None, device: str | None = None) -> None:
        self.layers = _checks.layer_list(layers)
        self.loss = None if loss is None else losses.get(loss)
        self.optimizer = None if optimizer is None else optimizers.get(optimizer)
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

    def train_step(self, x: Any, y: Any, sync: _distributed.DataParallel | None = None) -> tuple[Any, Any]:
        """One forward, backward and update on a batch already on the device.

        Returns the batch loss and the number correct (or ``None``) as 0-d
        device arrays; nothing is read back to the host. ``sync`` (data
        parallel) weights this rank's loss gradient and sums the gradients
        over the ranks before the update.
        """
        out = self.forward(x, training=True)
        loss = self.loss(out, y)
        dy = self.loss.backward()
        if sync is not None:
            dy = sync.scale(dy)
        # Nothing reads the gradient below the first trained layer: stop there, without its dx.
        first = next((i for i, layer in enumerate(self.layers) if layer.params), None)
        if first is not None:
            for layer in self.layers[:first:-1]:
                dy = layer.backward(dy)
            self.layers[first].backward_params(dy)
        if sync is not None:
            sync.reduce(self.layers)
        self.optimizer.step(self.layers)
        return loss, self.loss.correct(out, y)

    # ------------------------------------------------------------------ training

    @on_device
    def fit(self, x: Any, y: Any, epochs: int = 1, batch_size: int | None = None,
            shuffle: bool = True, validation_data: tuple[Any, Any] | None = None,
            verbose: int = 1, callbacks: Sequence[Callback] = (),
            on_nonfinite: str = "raise",
            distributed: bool | _distributed.Communicator | None = None) -> History:
        """Train for ``epochs`` passes over ``(x, y)``.

        Args:
            x, y: inputs and targets (NumPy arrays are moved to the device once).
            epochs: passes over the data.
            batch_size: samples per update; ``1`` is per-sample training,
                ``None`` the full batch.
            shuffle: reshuffle each epoch from portnn's seeded generator.
            validation_data: ``(x_val, y_val)`` evaluated after each epoch.
            verbose: 0 silent, 1 a line per epoch, ``n`` > 1 every n-th epoch.
            callbacks: ``f(model, epoch, logs)`` after each epoch; returning
                ``True`` stops training.
            on_nonfinite: a NaN/inf epoch loss raises
                :class:`portnn.NonFiniteLossError` (``"raise"``) or warns and
                stops (``"warn"``).
            distributed: a :mod:`portnn.distributed` communicator (``True``:
                ``init()``): every rank trains on its slice of each global
                batch of ``batch_size`` and the gradients are summed; rank 0 prints.

        Returns:
            A :class:`History` of per-epoch floats.
        """
        if self.loss is None or self.optimizer is None:
            raise ValueError("Sequential.fit needs a loss and an optimizer: "
                             "Sequential(layers, loss='mse', optimizer=portnn.SGD(0.1))")
        batch_size = _inputs.check_fit_args(epochs, batch_size, verbose, on_nonfinite, shuffle)
        x, y = _inputs.prepare(self, x, y)
        if validation_data is not None:
            validation_data = _inputs.prepare_validation(self, validation_data)
        n = x.shape[0]
        batch_size = batch_size or n
        be = self.backend
        history = History()
        dp = _distributed.DataParallel.attach(self, distributed, n)
        verbose = verbose if dp is None or dp.comm.is_main else 0
        # Schedules continue across fit calls and checkpoints: optimizer.epoch counts epochs done.
        first = self.optimizer.epoch
        for epoch in range(epochs):
            self.optimizer.epoch = first + epoch
            order = init_rng().permutation(n) if shuffle else None
            if dp is not None and shuffle:
                order = dp.shared(order)
            order = None if order is None else be.asarray(order, copy=False)
            total = correct = None
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)  # the Array API leaves slicing past the end undefined
                if dp is not None:
                    start, stop = dp.shard(start, stop)  # this rank's part of the global batch
                    if start == stop:
                        dp.empty_step()
                        continue
                if order is None:
                    xb, yb = x[start:stop, ...], y[start:stop, ...]
                else:
                    idx = order[start:stop]
                    xb, yb = fast.take(x, idx), fast.take(y, idx)
                loss, hits = self.train_step(xb, yb, dp)
                total, correct = _add(total, loss * xb.shape[0]), _add(correct, hits)
            self.optimizer.epoch = first + epoch + 1
            if dp is not None:
                total, correct = dp.end_epoch({"loss": total, "correct": correct}).values()
            logs = _read_back(total, correct, n)
            if validation_data is not None:
                val = (self._evaluate(*validation_data) if dp is None else
                       dp.evaluate(*validation_data, self._evaluate))
                logs.update({f"val_{k}": v for k, v in val.items()})
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
            if verbose and ((epoch + 1) % verbose == 0 or epoch == 0 or epoch + 1 == epochs):
                print(format_epoch(epoch + 1, epochs, logs), flush=True)
            if _inputs.stop_on_nonfinite(history, logs, epoch + 1, epochs, on_nonfinite):
                break
            if any([cb(self, epoch, logs) for cb in callbacks]):
                break
        if dp is not None:
            dp.close()
        return history

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
        """Mean loss (and accuracy for classification losses) on ``(x, y)``, as floats.

        ``distributed``: each rank evaluates its part and the sums are reduced.
        """
        if self.loss is None:
            raise ValueError("Sequential.evaluate needs a loss")
        if batch_size is not None:
            _checks.integer("Sequential.evaluate", "batch_size", batch_size)
        comm = _distributed.resolve(distributed)
        if comm is not None:
            return _distributed.evaluate(*self._to_device(x, y), comm,
                                         lambda xs, ys: self._evaluate(xs, ys, batch_size))
        return self._evaluate(*self._to_device(x, y), batch_size=batch_size)

    def _evaluate(self, x: Any, y: Any, batch_size: int | None = None) -> dict[str, float]:
        n = x.shape[0]
        step = n if batch_size is None else batch_size
        total = correct = None
        for s in range(0, n, step):
            xb, yb = x[s:min(s + step, n), ...], y[s:min(s + step, n), ...]
            out = self.forward(xb)
            total = _add(total, self.loss(out, yb) * xb.shape[0])
            correct = _add(correct, self.loss.correct(out, yb))
        return _read_back(total, correct, n)

    def _to_device(self, x: Any, *y: Any) -> Any:
        """The checked data boundary (:mod:`portnn._inputs`): ``x`` or ``(x, y)`` on the device."""
        return _inputs.prepare(self, x, *y)

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


def _add(total: Any, value: Any) -> Any:
    """Running on-device sum; ``None`` is the empty sum (and a ``None`` value adds nothing)."""
    if value is None:
        return total
    return value if total is None else total + value


def _read_back(total: Any, correct: Any, n: int) -> dict[str, float]:
    """The one host read of an epoch: mean loss (and accuracy) from the on-device sums."""
    logs = {"loss": float(total) / n}
    if correct is not None:
        logs["accuracy"] = float(correct) / n
    return logs


def format_epoch(epoch: int, epochs: int, logs: dict[str, float]) -> str:
    """The classic per-epoch line: ``epoch 3/1000 error=0.307195 accuracy=0.7500``."""
    parts = [f"epoch {epoch}/{epochs}"]
    for key, value in logs.items():
        name = key.replace("loss", "error")
        parts.append(f"{name}={value:.6f}" if "error" in name else f"{name}={value:.4f}")
    return " ".join(parts)


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

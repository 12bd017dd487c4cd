"""The checked boundary where data enters ``fit``, ``evaluate`` and ``predict``.

One place converts and checks what users hand in, so that every backend
behaves alike (NumPy's permissiveness never decides):

- features of any real dtype (bool, int, uint8, float16, float64), lists and
  Fortran-ordered or negatively strided arrays become the model's float dtype;
- NaN/inf, 0 samples and sample-count mismatches are errors naming the array;
- a model of several inputs takes a list of arrays, each checked as above and against its
  ``Input``'s shape (``x[1]: samples of shape ... do not fit ...``);
- targets are checked for their loss: ``CrossEntropy`` labels are integers (or
  floats holding integers) in ``[0, classes)``, shape ``(N,)`` or ``(N, 1)``, or
  one-hot / probability rows ``(N, classes)``; ``BinaryCrossEntropy`` targets
  lie in ``[0, 1]``; ``MSE`` takes any finite numbers.

NumPy data is checked on the host before it is moved (once per call); data
already on a device is checked there with a few reductions, read back once per
call (once per ``fit``, never per step). The error messages come from a host
copy, built only when a check has failed.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import array_api_compat
import array_api_compat.numpy as host_xp
import numpy as np

from .. import _checks
from ..backends import Backend, DeviceMismatchError, backend_of, check_device, get_backend, to_numpy
from ..backends import _fast as fast
from ..losses import MSE, BinaryCrossEntropy, CrossEntropy
from . import batches

__all__ = ["NonFiniteLossError", "check_fit_args", "prepare", "prepare_validation", "stop_on_nonfinite"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or inf; ``.history`` holds the epochs up to and including it."""

    def __init__(self, message: str, history: Any) -> None:
        super().__init__(message)
        self.history = history


_NO_TARGETS = object()


def prepare(model: Any, x: Any, y: Any = _NO_TARGETS, *, what: str = "") -> Any:
    """``x`` (and ``y``) checked and converted for ``model``, as arrays on its backend.

    Args:
        model: the :class:`~portnn.Sequential` the data is for.
        x: features: NumPy arrays, lists, or arrays already on the model's backend.
        y: targets, checked for ``model.loss``; left out for ``predict``.
        what: where the data came from, for messages (``"validation_data"``).

    Returns:
        ``x``, or ``(x, y)`` when ``y`` is given.
    """
    be = model_backend(model)
    prefix = f"{what} " if what else ""
    x = _model_inputs(model, be, x, f"{prefix}x")
    if y is _NO_TARGETS:
        return x
    if y is None:
        raise TypeError(f"{prefix}y is None; pass the targets, one per sample")
    y = _array(be, y, f"{prefix}y")
    if y.shape[0] != batches.count(x):
        raise ValueError(f"{prefix}x has {batches.count(x)} samples but {prefix}y has {y.shape[0]}; "
                         "pass one target per sample")
    return x, _targets(model, be, x, y, f"{prefix}y")


def _model_inputs(model: Any, be: Backend, x: Any, name: str) -> Any:
    """The features (or Embedding indices) of each of the model's inputs: one array, or a list."""
    specs = model.input_specs()
    if len(specs) == 1:
        return _one_input(be, x, *specs[0], _dtype(model), name)
    k = len(specs)
    if not isinstance(x, list | tuple) or len(x) != k:
        got = f"a list of {len(x)}" if isinstance(x, list | tuple) else f"a {type(x).__name__}"
        raise ValueError(f"{name}: the model has {k} inputs, so pass a list of {k} arrays (in the "
                         f"order of its inputs), got {got}")
    xs = [_one_input(be, a, *spec, _dtype(model), f"{name}[{i}]") for i, (a, spec) in
          enumerate(zip(x, specs, strict=True))]
    for i, a in enumerate(xs[1:], 1):
        if a.shape[0] != xs[0].shape[0]:
            raise ValueError(f"{name}[{i}] has {a.shape[0]} samples but {name}[0] has "
                             f"{xs[0].shape[0]}; every input needs one row per sample")
    return xs


def _one_input(be: Backend, x: Any, shape: tuple[int | None, ...] | None, embedding: Any,
               dtype: str, name: str) -> Any:
    x = indices(be, x, embedding, name) if embedding is not None else _features(be, x, dtype, name)
    got = tuple(x.shape[1:])
    if shape is not None and (len(got) != len(shape) or any(
            want is not None and want != d for d, want in zip(got, shape, strict=False))):
        raise ValueError(f"{name}: samples of shape {got} do not fit the model's Input of shape "
                         f"{tuple(shape)}")
    return x


def prepare_validation(model: Any, data: Any) -> tuple[Any, Any]:
    """``validation_data`` as a checked ``(x, y)`` pair on the model's backend."""
    if not isinstance(data, tuple | list) or len(data) != 2:
        kind = (f"a {type(data).__name__} of length {len(data)}" if isinstance(data, tuple | list)
                else type(data).__name__)
        raise TypeError(f"validation_data must be an (x, y) pair, got {kind}")
    return prepare(model, *data, what="validation_data")


def model_backend(model: Any) -> Backend:
    """The one backend all of ``model``'s parameters live on (a clear error when they differ)."""
    placed: dict[Backend, str] = {}
    for path, layer, key in model.named_parameters():
        head, _, rest = path.partition(".")  # "0.weight" of a Sequential reads "layers[0].weight"
        where = f"layers[{head}].{rest}" if head.isdigit() else path
        placed.setdefault(backend_of(layer.params[key]), f"{where} ({type(layer).__name__})")
    if len(placed) > 1:
        where = "; ".join(f"{name} on {be}" for be, name in placed.items())
        raise DeviceMismatchError(f"{type(model).__name__}: the parameters live on different "
                                  f"backends ({where}); move them all with model.to(backend, device)")
    return next(iter(placed), None) or get_backend()


def check_fit_args(owner: str, epochs: Any, batch_size: Any, verbose: Any = 1,
                   on_nonfinite: Any = "raise", shuffle: Any = True) -> int | None:
    """Check ``fit``'s scalar arguments; returns ``batch_size`` as an int (or ``None``).

    ``owner``: the method the messages name (``"Model.fit"``)."""
    _checks.integer(owner, "epochs", epochs, minimum=0)
    _checks.boolean(owner, "shuffle", shuffle)
    if not isinstance(verbose, bool):  # verbose=True/False reads naturally: allowed
        _checks.integer(owner, "verbose", verbose, minimum=0)
    _checks.choice(owner, "on_nonfinite", on_nonfinite, ("raise", "warn"))
    return None if batch_size is None else _checks.integer(owner, "batch_size", batch_size)


def check_initial_epoch(owner: str, initial_epoch: Any, epochs: int) -> int:
    """``fit(initial_epoch=)``: Keras' meaning, the epochs ``initial_epoch..epochs-1`` are trained."""
    _checks.integer(owner, "initial_epoch", initial_epoch, minimum=0)
    if initial_epoch > epochs:
        raise ValueError(f"{owner}: initial_epoch={initial_epoch} is past epochs={epochs}; "
                         "epochs is the total, so training runs epochs initial_epoch..epochs-1")
    return int(initial_epoch)


def stop_on_nonfinite(owner: str, history: Any, logs: dict[str, float], epoch: int, epochs: int,
                      on_nonfinite: str = "raise") -> bool:
    """After an epoch: ``False`` while its loss is finite, else raise (or warn and return ``True``)."""
    loss = logs.get("loss", 0.0)
    if math.isfinite(loss):
        return False
    message = (f"{owner}: the training loss is {loss} at epoch {epoch}/{epochs}; training "
               "stopped. Lower the learning rate, or check the data and the weights for NaN/inf. "
               "The history so far is on this exception's .history")
    if on_nonfinite == "warn":
        warnings.warn(message.replace("this exception's .history", "fit's return value"),
                      RuntimeWarning, stacklevel=3)
        return True
    raise NonFiniteLossError(message, history)


# --------------------------------------------------------------------------- features


def _dtype(model: Any) -> str:
    return next((layer.dtype for _, layer in model.layers_by_path() if hasattr(layer, "dtype")), "float32")


def _array(be: Backend, a: Any, name: str) -> Any:
    """``a`` as a NumPy array of real numbers, or an array already on ``be``; >= 1 axis, >= 1 sample."""
    if array_api_compat.is_array_api_obj(a) and not isinstance(a, np.ndarray | np.generic):
        check_device(name, a, be)
        if not be.xp.isdtype(a.dtype, ("bool", "integral", "real floating")):
            raise TypeError(f"{name}: expected real numbers, got an array of dtype {a.dtype}")
    else:
        given = type(a).__name__
        try:
            a = np.asarray(a)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name}: expected an array of numbers, got a {given} that NumPy "
                            f"cannot turn into one ({exc})") from None
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{name}: expected real numbers (bool, int or float), got a {given}"
                            f"{' of dtype ' + str(a.dtype) if given == 'ndarray' else ''}")
    if a.ndim == 0:
        raise ValueError(f"{name}: expected one row per sample, got a scalar")
    if a.shape[0] == 0:
        raise ValueError(f"{name} has 0 samples (shape {tuple(a.shape)}); there is nothing to "
                         "train on or predict")
    return a


def indices(be: Backend | None, x: Any, layer: Any, name: str) -> Any:
    """Integer indices for ``layer`` (an :class:`~portnn.Embedding`), checked in range once, on
    the host or where they live, in the widest integer dtype of ``be``."""
    be = be or get_backend()
    x = _array(be, x, name)
    xp, n = _xp(x), layer.num_embeddings
    ok = (x >= 0) & (x < n)
    if xp.isdtype(x.dtype, "real floating"):
        ok = ok & (xp.floor(x) == x)
    _reject(x, ok, name, f"must hold {layer.name} indices: integers in [0, {n})")
    if _on_device(x):
        return xp.astype(x, be.dtype(be.index_dtype), copy=False)
    return be.asarray(x.astype(be.index_dtype), dtype=be.index_dtype, copy=False)


def _features(be: Backend, x: Any, dtype: str, name: str) -> Any:
    x = _floats(be, _array(be, x, name), dtype)
    _check_finite(x, name)
    return _move(be, x)


def _floats(be: Backend, a: Any, dtype: str) -> Any:
    """``a`` cast to ``dtype`` where it lives; host copies come out C-ordered, positive strides."""
    if _on_device(a):
        return be.xp.astype(a, be.dtype(dtype), copy=False)
    be.dtype(dtype)  # a clear BackendError for float64 on a device without it
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf: reported below
        return np.ascontiguousarray(a, dtype=dtype)


def _on_device(a: Any) -> bool:
    return not isinstance(a, np.ndarray)


def _move(be: Backend, a: Any) -> Any:
    """A checked host array onto ``be`` in its own dtype (read-only data: no copy where possible)."""
    return a if _on_device(a) else be.asarray(a, dtype=str(a.dtype), copy=False)


def _xp(a: Any) -> Any:
    return host_xp if isinstance(a, np.ndarray) else array_api_compat.array_namespace(a)


def _rows(a: Any) -> Any:
    return _xp(a).reshape(a, (a.shape[0], -1))


def _check_finite(a: Any, name: str) -> None:
    xp = _xp(a)
    # NaN and inf propagate into a sum, so a finite sum proves every value finite in one cheap
    # reduction (all(isfinite) over MNIST costs torch 0.5 s); only an infinite sum, which may
    # be an overflow, needs the element-wise test.
    if not xp.isdtype(a.dtype, "real floating") or bool(xp.isfinite(xp.sum(a))):
        return
    _reject(a, xp.isfinite(a), name, "holds NaN or inf")


def _reject(a: Any, ok: Any, name: str, problem: str, hint: str = "") -> None:
    """Raise unless ``ok`` (per element of ``a``, or per sample) holds everywhere.

    One reduction and one read-back; the message is built from a host copy, only on failure.
    """
    if ok is None or bool(_xp(ok).all(ok)):
        return
    rows, ok = to_numpy(_rows(a)), to_numpy(ok).reshape(a.shape[0], -1)
    bad = ~ok.all(axis=1)
    first = int(np.argmax(bad))
    values = np.unique(rows[~ok] if ok.shape == rows.shape else rows[bad])
    shown = ", ".join(str(v) for v in values[:6]) + (", ..." if values.size > 6 else "")
    raise ValueError(f"{name} {problem}; offending values: {shown} (first at sample {first}: "
                     f"{_short(rows[first])}; {int(bad.sum())} samples affected){hint}")


def _short(row: np.ndarray) -> str:
    return np.array2string(row[:8], precision=4) + (" ..." if row.size > 8 else "")


# --------------------------------------------------------------------------- targets


def _targets(model: Any, be: Backend, x: Any, y: Any, name: str) -> Any:
    loss, dtype = model.loss, _dtype(model)
    if not isinstance(loss, CrossEntropy | BinaryCrossEntropy | MSE):
        # A custom loss: only the universal checks; integer targets stay integers.
        if _xp(y).isdtype(y.dtype, "real floating"):
            y = _floats(be, y, dtype)
        _check_finite(y, name)
        return _move(be, y)
    try:  # one sample through the model: its output shape, and a clear error for a wrong x
        out = tuple(model.forward(batches.rows(x, 0, 1)).shape)
    except ValueError as exc:
        shapes = ", ".join(str(tuple(a.shape[1:])) for a in (x if isinstance(x, list) else [x]))
        raise ValueError(f"{name[:-1]}x: samples of shape {shapes} do not fit the model: "
                         f"{exc}") from exc
    if isinstance(loss, CrossEntropy):
        return _class_targets(be, y, out, dtype, name)
    if tuple(y.shape[1:]) != out[1:]:
        raise ValueError(f"{name} has shape {tuple(y.shape)} but the model outputs (N, "
                         f"{', '.join(map(str, out[1:]))}) per batch; {type(loss).__name__} needs "
                         f"the same shape (e.g. y.reshape(-1, {out[-1] if len(out) > 1 else 1}))")
    y = _floats(be, y, dtype)
    _check_finite(y, name)
    if isinstance(loss, BinaryCrossEntropy):
        _reject(y, (y >= 0) & (y <= 1), name, "must hold BinaryCrossEntropy targets in [0, 1]")
    return _move(be, y)


def _class_targets(be: Backend, y: Any, out: tuple[int, ...], dtype: str, name: str) -> Any:
    if len(out) != 2:
        raise ValueError(f"CrossEntropy needs model outputs of shape (N, classes), but the model "
                         f"outputs {out}; end the model with a Dense layer (or Flatten)")
    classes, xp = out[1], _xp(y)
    if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1 and classes > 1):
        labels = xp.reshape(y, (-1,))
        if not xp.isdtype(labels.dtype, "real floating"):
            # Widest integers first: comparing uint8 or bool with the class count is not portable.
            labels = (xp.astype(labels, fast.index_dtype(labels)) if _on_device(labels)
                      else labels.astype(np.int64))
        # NaN fails every comparison, and floor(inf) == inf fails the range test.
        _reject(labels, (labels >= 0) & (labels < classes) & (xp.floor(labels) == labels), name,
                f"must hold CrossEntropy class labels: integers in [0, {classes}) (the model has "
                f"{classes} outputs)")
        if _on_device(labels):
            return xp.astype(labels, be.dtype(be.index_dtype), copy=False)
        return be.asarray(labels.astype(be.index_dtype), dtype=be.index_dtype, copy=False)
    if y.ndim == 2 and y.shape[1] == classes:
        y = _floats(be, y, dtype)
        xp = _xp(y)
        ok = xp.all((y >= 0) & (y <= 1), axis=1) & (xp.abs(xp.sum(y, axis=1) - 1) <= 1e-3)
        _reject(y, ok, name, "must hold one-hot or probability rows (values in [0, 1] summing to 1) "
                "for CrossEntropy", hint="; or pass integer labels of shape (N,)")
        return _move(be, y)
    raise ValueError(f"{name} has shape {tuple(y.shape)}, which does not fit CrossEntropy with "
                     f"{classes} classes: pass integer labels of shape (N,) or (N, 1), or one-hot / "
                     f"probability rows of shape (N, {classes})")

"""Checkpoints: a whole model in one ``.npz`` that NumPy reads without pickle.

The file is a plain NumPy ``.npz`` (a zip of ``.npy`` files) holding:

``__portnn__``
    a 0-d string array with JSON: ``{"format": "portnn-checkpoint", "version": 1,
    "model": "Sequential", "layers": [{"class": "Dense", "config": {...}}, ...], "loss": {...} | null,
    "metrics": ["accuracy", ...] | null,
    "optimizer": {"class": "Adam", "config": {...}, "t": 120, "epoch": 3} | null}``.
    A learning-rate schedule appears in the optimizer config as
    ``"lr": {"schedule": "StepDecay", ...its arguments}``. A block built from
    a list of layers (a nested ``Sequential``) adds ``"layers": [...]`` to its
    entry. A graph :class:`~portnn.Model` adds ``"graph": {"inputs": [{"shape", "name"}],
    "nodes": [{"layer": index into layers, "inputs": [positions], "many": bool}], "output":
    position}`` (positions count the inputs, then each node's output), at the top or in a
    nested entry. A user's own ``Layer`` subclass is named ``"module.QualName"`` and
    found again by that name once its class statement has run.
``param/<path>``, ``buffer/<path>``
    each parameter and buffer by its path, dots written as slashes (the
    parameter ``0.weight`` is ``param/0/weight``, ``2.1.bias`` of a nested
    block ``param/2/1/bias``), as host arrays of their own dtype.
``opt/<path>/<state name>``
    the optimizer state of one parameter (e.g. ``opt/0.weight/m``).

Loading rebuilds each layer from its config (``init`` of portnn's layers replaced
by ``"zeros"``: the saved arrays overwrite it), checks that the arrays fit that
architecture exactly, then moves everything to the target backend.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import tempfile
import zipfile
from typing import Any

import numpy as np

from .. import losses, optimizers
from ..backends import Backend, get_backend, to_numpy, use_backend
from ..layers import Layer
from ..layers._base import REGISTRY, class_name

FORMAT = "portnn-checkpoint"
VERSION = 1
META = "__portnn__"


class CheckpointError(ValueError):
    """A checkpoint file is truncated, foreign or does not fit its architecture."""


def save(model: Any, path: str | os.PathLike[str]) -> None:
    """Write ``model`` to ``path`` atomically (see the module docstring for the layout)."""
    write_atomic(path, entries(model))


def entries(model: Any) -> dict[str, np.ndarray]:
    """What :func:`save` writes: the metadata entry and every array, on the host, by entry name."""
    optimizer = model.optimizer
    meta = {
        "format": FORMAT, "version": VERSION, "model": class_name(type(model)),
        "layers": [_layer_entry(layer) for layer in model.layers],
        **_graph(model),
        "loss": None if model.loss is None else _entry(model.loss),
        "metrics": getattr(model, "metrics", None),
        "optimizer": None if optimizer is None else
        {**_entry(optimizer), "t": optimizer.t, "epoch": optimizer.epoch},
    }
    arrays = {META: np.array(json.dumps(meta, default=_jsonable))}
    for kind, slots in (("param", model.named_parameters()), ("buffer", model.named_buffers())):
        store = "params" if kind == "param" else "buffers"
        arrays.update({_key(kind, path): to_numpy(getattr(layer, store)[k]) for path, layer, k in slots})
    if optimizer is not None:
        for name, state in optimizer.state.items():
            arrays.update({f"opt/{name}/{k}": to_numpy(v) for k, v in state.items()})
    return arrays


def write_atomic(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` of ``arrays`` to ``path``, atomically: a temporary file beside it, fsync, rename."""
    path = os.fspath(path)
    folder, prefix = os.path.dirname(os.path.abspath(path)), f".portnn-{os.path.basename(path)}."
    # Written beside the target and renamed over it: a failed save leaves the old file as it was.
    # The temporary name carries the target and our pid, so a later save can remove what a
    # killed one left behind.
    try:
        _remove_leftovers(folder, prefix)
        mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o666 & ~_umask()
        fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}-", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _naming(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:  # KeyboardInterrupt too: never leave the temporary file behind
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _naming(exc, path) from exc
        raise


def _naming(exc: OSError, path: str) -> OSError:
    """The same kind of OSError, naming the user's path rather than the temporary file."""
    return type(exc)(exc.errno, f"cannot save the model to {path!r}: {exc.strerror or exc}")


def _remove_leftovers(folder: str, prefix: str) -> None:
    """Delete temporary files of earlier saves to the same path whose process has died."""
    if os.name != "posix" or not os.path.isdir(folder):
        return  # no cheap liveness test without POSIX signals: keep them
    for name in os.listdir(folder):
        pid = name[len(prefix):].partition("-")[0]
        if name.startswith(prefix) and name.endswith(".tmp") and pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def load(cls: type | None, path: str | os.PathLike[str], backend: str | Backend | None = None,
         device: str | None = None, allow_nonfinite: bool = False) -> Any:
    """Rebuild a model saved by :func:`save` on ``backend``/``device`` (default: the active one);
    ``cls=None``: the class the file names (``Sequential`` for files older than that entry).
    NaN or inf in a saved array is a :class:`CheckpointError` unless ``allow_nonfinite``."""
    target = get_backend(backend, device)
    data, meta = _read(path)
    saved = REGISTRY.get(meta.get("model", "Sequential"))
    if cls is not None and saved is not None and not issubclass(saved, cls):
        raise CheckpointError(f"{path} holds a {saved.__name__}, not a {cls.__name__}; load it with "
                              f"{saved.__name__}.load(...)")
    cls = cls or _model_class(path, meta)
    try:
        with use_backend("numpy"):
            model = cls.rebuild([_build_layer(entry, path) for entry in meta["layers"]], meta.get("graph"))
            if meta["loss"]:
                model.loss = _build(losses, meta["loss"], path)
            model.metrics = meta.get("metrics")
            if meta["optimizer"]:
                model.optimizer = _build(optimizers, meta["optimizer"], path)
                model.optimizer.t = int(meta["optimizer"]["t"])
                model.optimizer.epoch = int(meta["optimizer"]["epoch"])
    except CheckpointError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild the saved architecture: "
                              f"{type(exc).__name__}: {exc}") from None
    expected = {_key("param", p): (layer.params, k) for p, layer, k in model.named_parameters()}
    expected.update({_key("buffer", p): (layer.buffers, k) for p, layer, k in model.named_buffers()})
    params = {p: layer.params[k] for p, layer, k in model.named_parameters()}
    for name, value in data.items():
        if not allow_nonfinite and value.dtype.kind == "f" and not np.isfinite(value).all():
            raise CheckpointError(f"{path}: {name!r} holds NaN or inf (the saved training had "
                                  "diverged?); load it anyway with allow_nonfinite=True")
        if name in expected:
            store, key = expected.pop(name)
            _check_fits(path, name, value, store[key])
            store[key] = value
        elif name.startswith("opt/") and model.optimizer is not None:
            owner, _, leaf = name[len("opt/"):].rpartition("/")
            if owner not in params:
                raise CheckpointError(f"{path}: optimizer state {name!r} belongs to no parameter "
                                      "of the saved architecture")
            _check_fits(path, name, value, params[owner])
            model.optimizer.state.setdefault(owner, {})[leaf] = value
        else:
            raise CheckpointError(f"{path}: entry {name!r} does not fit the saved architecture")
    if expected:
        raise CheckpointError(f"{path}: the saved architecture needs {sorted(expected)}, which the "
                              "file lacks")
    return model.to(target)


def model_class(path: str | os.PathLike[str]) -> type:
    """The model class a checkpoint names (``Sequential`` for files older than that entry)."""
    return _model_class(path, _read(path)[1])


def _model_class(path: Any, meta: dict[str, Any]) -> type:
    cls = REGISTRY.get(meta.get("model", "Sequential"))
    if cls is None:
        raise CheckpointError(f"{path}: unknown model class {meta['model']!r}; define or import it "
                              "before loading")
    return cls


def _key(kind: str, path: str) -> str:
    """``param/0/weight`` for the parameter ``0.weight``: a path's dots become the file's slashes."""
    return f"{kind}/{path.replace('.', '/')}"


def _read(path: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and the parsed metadata; ``CheckpointError`` for anything but a portnn file."""
    with open(path, "rb") as f:  # FileNotFoundError for a missing file, as open() gives
        is_zip = zipfile.is_zipfile(f)
    if not is_zip:
        raise CheckpointError(f"{path} is not a portnn checkpoint: not a .npz (zip) file, or a "
                              "truncated one")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable portnn checkpoint (truncated or "
                              f"corrupt): {type(exc).__name__}: {exc}") from None
    if META not in data:
        raise CheckpointError(f"{path} is a .npz file but not a portnn checkpoint (no {META!r} "
                              f"entry; it holds {sorted(data)[:5]})")
    try:
        meta = json.loads(str(data.pop(META)))
    except ValueError as exc:
        raise CheckpointError(f"{path}: unreadable {META!r} metadata: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a portnn checkpoint")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: portnn checkpoint version {meta.get('version')!r}; this "
                              f"portnn reads version {VERSION}")
    return data, meta


def _check_fits(path: Any, name: str, value: np.ndarray, like: Any) -> None:
    if tuple(value.shape) != tuple(like.shape):
        raise CheckpointError(f"{path}: {name!r} has shape {tuple(value.shape)} but the saved "
                              f"architecture needs {tuple(like.shape)}")
    if value.dtype != like.dtype:
        raise CheckpointError(f"{path}: {name!r} has dtype {value.dtype} but the saved "
                              f"architecture needs {like.dtype}")


def _entry(obj: Any) -> dict[str, Any]:
    return {"class": type(obj).__name__, "config": obj.config()}


def _layer_entry(layer: Layer) -> dict[str, Any]:
    """A layer's class and config; a block built from a list of layers (Sequential) nests them."""
    config = layer.config()
    entry: dict[str, Any] = {"class": class_name(type(layer)), "config": config, **_graph(layer)}
    if "layers" in inspect.signature(type(layer).__init__).parameters or "graph" in entry:
        entry["layers"] = [_layer_entry(child) for child in layer.layers]
        config.pop("layers", None)
    # A layer given as an argument (Residual's shortcut) nests as an entry of its own.
    entry["children"] = {key: _layer_entry(config.pop(key)) for key in
                         [k for k, v in config.items() if isinstance(v, Layer)]}
    if not entry["children"]:
        del entry["children"]
    return entry


def _build_layer(entry: dict[str, Any], path: Any) -> Layer:
    cls = REGISTRY.get(entry["class"])
    if cls is None:
        raise CheckpointError(
            f"{path}: unknown layer class {entry['class']!r}; define or import it before loading "
            "(a portnn.Layer subclass registers itself when its class statement runs)")
    config = dict(entry["config"])
    if "graph" in entry:  # a graph model nested as a layer (a shared encoder)
        return cls.rebuild([_build_layer(child, path) for child in entry["layers"]], entry["graph"])
    if "layers" in entry:
        config["layers"] = [_build_layer(child, path) for child in entry["layers"]]
    config.update({key: _build_layer(child, path) for key, child in entry.get("children", {}).items()})
    if class_name(cls) == cls.__name__ and "init" in config:
        config["init"] = "zeros"  # portnn's initializers: the saved weights replace it; draw nothing
    return cls(**config)


def _graph(model: Any) -> dict[str, Any]:
    """``{"graph": ...}`` for a graph model (:meth:`portnn.Model.graph_config`), else ``{}``."""
    config = getattr(model, "graph_config", None)
    return {} if config is None else {"graph": config()}


def _build(module: Any, entry: dict[str, Any], path: Any) -> Any:
    cls = getattr(module, entry["class"], None)
    if not isinstance(cls, type):
        raise CheckpointError(f"{path}: unknown class {entry['class']!r} in {module.__name__}")
    config = dict(entry["config"])
    if isinstance(config.get("lr"), dict):
        schedule = dict(config["lr"])
        config["lr"] = getattr(optimizers, schedule.pop("schedule"))(**schedule)
    return cls(**config)


def _jsonable(value: Any) -> Any:
    if callable(value):  # a custom initializer: only its name is kept (the weights are saved)
        return getattr(value, "__name__", repr(value))
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot save {value!r} ({type(value).__name__}) in a checkpoint's JSON")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

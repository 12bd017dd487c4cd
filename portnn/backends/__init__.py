"""Backend selection: which array namespace and device portnn computes on.

A backend is a value (:class:`Backend`): a name, an array-api-compat namespace
``xp``, a device and a seeded random source. This package is the only part of
portnn that knows array libraries by name.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import array_api_compat
import numpy as np

from ._errors import BackendError, DeviceMismatchError
from ._libraries import LIBRARIES, Library

__all__ = [
    "Backend",
    "BackendError",
    "DeviceMismatchError",
    "NAMES",
    "array_namespace",
    "available_backends",
    "backend_of",
    "get_backend",
    "init_rng",
    "on_device",
    "resolve",
    "rng_state",
    "seed",
    "set_rng_state",
    "set_backend",
    "set_stream",
    "to_numpy",
    "use_backend",
]

NAMES = (*LIBRARIES, "auto")


@dataclass(frozen=True)
class Backend:
    """An array namespace on one device.

    Example:
        >>> be = portnn.get_backend("numpy")
        >>> be.asarray([1.0, 2.0]).dtype
        dtype('float32')
    """

    name: str
    device: Any
    xp: Any = field(repr=False, compare=False)
    library: Library = field(repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.name}-{self.device_name}"

    # Equal when name and device name are: "cuda" and "cuda:0" spell one device.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Backend):
            return NotImplemented
        return (self.name, self.device_name) == (other.name, other.device_name)

    def __hash__(self) -> int:
        return hash((self.name, self.device_name))

    def activate(self) -> contextlib.AbstractContextManager[Any]:
        """A context in which this backend's device is the library's current one.

        CuPy computes on its *current* device, so everything that computes
        enters this: ``fit``, ``predict``, ``evaluate``, ``save``, ``load``,
        ``Layer.__call__``, ``gradcheck``. A no-op for the other libraries.

        Example:
            >>> with model.backend.activate():
            ...     loss, correct = model.train_step(xb, yb)
        """
        return self.library.activate(self.device)

    @property
    def device_name(self) -> str:
        """The device as a string: ``"cpu"``, ``"cuda:0"``, ``"device1"``, ``"meta"``."""
        return self.library.device_name(self.device)

    def dtype(self, name: str | Any) -> Any:
        """The namespace's dtype object for ``"float32"``, ``"float64"``, ``"int64"``, ..."""
        if not isinstance(name, str):
            return name
        supported = self.xp.__array_namespace_info__().dtypes(device=self.device)
        if name not in supported:
            raise BackendError(
                f"backend {self} does not support dtype {name}; supported: {sorted(supported)}"
            )
        return supported[name]

    def asarray(self, x: Any, dtype: str | Any | None = None, copy: bool = True) -> Any:
        """Move host data (NumPy arrays, lists, scalars) to this backend once.

        Host data is copied, so updating the result in place (as optimizers do
        with parameters) never writes into the caller's array; ``copy=False``
        lets read-only data (training inputs) share memory where it can. An
        array already on this backend is returned as is (cast if ``dtype``
        differs); an array of another namespace or device raises
        :class:`DeviceMismatchError` instead of being copied silently.
        """
        if array_api_compat.is_array_api_obj(x) and not isinstance(x, np.ndarray):
            check_device("input", x, self)
            return x if dtype is None else self.xp.astype(x, self.dtype(dtype), copy=False)
        host = np.asarray(x)
        if dtype is not None:
            self.dtype(dtype)  # a clear error for float64 on a device without it
            host = host.astype(dtype, copy=False)
        elif host.dtype == np.float64:
            host = host.astype(np.float32)  # portnn's default float dtype
        with self.activate():
            return self.library.from_numpy(host, self.device, copy=copy)

    def move(self, x: Any, dtype: str | None = None) -> Any:
        """A copy of an array of any backend on this one, via the host; its dtype unless ``dtype``."""
        host = to_numpy(x)
        return self.asarray(host, dtype=dtype or str(host.dtype))

    def to_numpy(self, x: Any) -> np.ndarray:
        """Copy an array of this backend to a host NumPy array."""
        return self.library.to_numpy(x)

    def uniform(self, shape: tuple[int, ...]) -> Any:
        """float32 samples from [0, 1) on the device, from the seeded per-device generator."""
        key = (self.name, self.device_name)
        with self.activate():
            sample, _device_rngs[key] = self.library.uniform(self.generator(), tuple(shape), None,
                                                             self.device)
            return sample

    def generator(self) -> Any:
        """The seeded per-device generator dropout draws from (made on first use): the library's
        own, or a JAX key, which each draw replaces with the next."""
        key = (self.name, self.device_name)
        if key not in _device_rngs:
            with self.activate():
                _device_rngs[key] = self.library.generator(_stream_seed(), self.device)
        return _device_rngs[key]

    @property
    def mutable(self) -> bool:
        """Whether arrays update in place (``x *= a``); ``False`` on JAX, where it makes a new one."""
        return self.library.mutable

    @property
    def index_dtype(self) -> str:
        """The widest integer dtype here, for labels and indices: ``"int64"``, or ``"int32"`` (JAX
        without x64)."""
        supported = self.xp.__array_namespace_info__().dtypes(device=self.device)
        return "int64" if "int64" in supported else "int32"


# --------------------------------------------------------------------------- random numbers

_seed: int | None = None
_host_rng = np.random.default_rng()
_device_rngs: dict[tuple[str, str], Any] = {}
_stream = 0


def seed(n: int) -> None:
    """Seed everything portnn draws: initial weights, shuffling, dropout masks.

    Example:
        >>> portnn.seed(0)
    """
    global _seed, _host_rng
    _seed = int(n)
    _host_rng = np.random.default_rng(_seed)
    _device_rngs.clear()


def set_stream(index: int) -> None:
    """Give the per-device generators (dropout masks) stream ``index`` of the seed.

    Data-parallel rank ``r`` uses stream ``r``, so ranks draw different masks
    from one :func:`seed`; stream 0 is what a single process draws.
    """
    global _stream
    if int(index) != _stream:
        _stream = int(index)
        _device_rngs.clear()


def _stream_seed() -> int | None:
    if _seed is None or _stream == 0:
        return _seed
    return int(np.random.SeedSequence([_seed, _stream]).generate_state(1)[0])


def init_rng() -> np.random.Generator:
    """The host-side generator used for parameter initialisation and shuffling."""
    return _host_rng


def rng_state() -> dict[str, Any]:
    """Every random state portnn draws from, as host data (JSON-able values and NumPy arrays).

    The seed, the host generator (initial weights, shuffles) and each per-device generator made
    so far (dropout), by backend and device; :func:`set_rng_state` puts it back, and later draws
    repeat those that would have followed. Used by :class:`portnn.callbacks.BackupAndRestore`.
    """
    return {"seed": _seed, "host": _host_rng.bit_generator.state,
            "devices": [[name, device, LIBRARIES[name].generator_state(gen)]
                        for (name, device), gen in _device_rngs.items() if gen is not None]}


def set_rng_state(state: dict[str, Any]) -> None:
    """Put back a :func:`rng_state` (the stream, per data-parallel rank, stays this process's)."""
    global _seed, _host_rng
    host = np.random.default_rng()
    host.bit_generator.state = state["host"]
    devices = {}
    for name, device, saved in state["devices"]:
        be = _make(name, device)
        with be.activate():
            devices[(name, be.device_name)] = be.library.restore_generator(saved, be.device)
    _seed, _host_rng = state["seed"], host
    _device_rngs.clear()
    _device_rngs.update(devices)


# --------------------------------------------------------------------------- selection

_chosen: tuple[str, str | None] | None = None  # set_backend
_scoped: contextvars.ContextVar[tuple[str, str | None] | None] = contextvars.ContextVar(
    "portnn_backend", default=None
)


_warned_auto = False


def _make(name: str, device: Any) -> Backend:
    """The backend ``name`` on ``device`` (any spelling), made once per device name.

    The cache is keyed on the normalised device name, not on ``device`` itself: a
    ``cupy.cuda.Device`` is unhashable, and ``"cuda"`` and ``"cuda:0"`` are one device.
    """
    global _warned_auto
    if name == "auto":
        try:
            return _make("cupy", device)
        except BackendError as exc:
            if not _warned_auto:
                _warned_auto = True
                warnings.warn(f"portnn: backend 'auto' falls back to NumPy because {exc}",
                              RuntimeWarning, stacklevel=4)
            return _make("numpy", None)
    if name not in LIBRARIES:
        raise BackendError(f"unknown backend {name!r}; valid names: {', '.join(NAMES)}")
    return _built(name, None if device is None else LIBRARIES[name].normalize(device))


@functools.cache
def _built(name: str, device: str | None) -> Backend:
    library = LIBRARIES[name]
    xp = library.load()
    dev = library.device(device)
    library.check(dev)
    return Backend(name=name, device=dev, xp=xp, library=library)


def clear_cache() -> None:
    """Forget every backend made so far: the next use imports and self-checks its library again."""
    _built.cache_clear()


def resolve(backend: str | Backend | None = None, device: str | None = None) -> tuple[Backend, str]:
    """The backend in force and the precedence rule that chose it.

    Precedence, highest first: the ``backend``/``device`` arguments,
    :func:`use_backend`, :func:`set_backend`, the ``PORTNN_BACKEND`` /
    ``PORTNN_DEVICE`` environment variables, then ``numpy``.
    """
    if isinstance(backend, Backend):
        return (backend if device is None else _make(backend.name, device)), "argument"
    env = os.environ.get("PORTNN_BACKEND") or None
    rules = [
        ("argument", (backend, device) if backend else None),
        ("use_backend", _scoped.get()),
        ("set_backend", _chosen),
        ("PORTNN_BACKEND", (env, os.environ.get("PORTNN_DEVICE") or None) if env else None),
        ("default", ("numpy", os.environ.get("PORTNN_DEVICE") or None)),
    ]
    rule, (name, dev) = next((rule, pick) for rule, pick in rules if pick is not None)
    return _make(name.strip().lower(), device or dev), rule


def get_backend(backend: str | Backend | None = None, device: str | None = None) -> Backend:
    """The resolved backend (see :func:`resolve` for the precedence).

    Example:
        >>> portnn.get_backend("numpy").xp.__name__
        'array_api_compat.numpy'
    """
    return resolve(backend, device)[0]


def set_backend(backend: str | None, device: str | None = None) -> Backend | None:
    """Select the process-wide backend (``None`` clears the choice).

    Example:
        >>> portnn.set_backend("torch", "cpu")
    """
    global _chosen
    if backend is None:
        _chosen = None
        return None
    chosen = _make(backend, device)  # fail now, not at first use
    _chosen = (backend, device)
    return chosen


@contextlib.contextmanager
def use_backend(backend: str, device: str | None = None) -> Iterator[Backend]:
    """Use a backend inside a ``with`` block.

    Example:
        >>> with portnn.use_backend("array_api_strict", "device1") as be:
        ...     layer = portnn.Dense(2, 3)
    """
    chosen = _make(backend, device)
    token = _scoped.set((backend, device))
    try:
        with chosen.activate():
            yield chosen
    finally:
        _scoped.reset(token)


def available_backends() -> dict[str, list[str]]:
    """Backends usable on this machine, each with its devices.

    Example:
        >>> "numpy" in portnn.available_backends()
        True
    """
    found = {}
    for name, library in LIBRARIES.items():
        try:
            _make(name, None)
        except BackendError:
            continue
        found[name] = library.devices()
    return found


def unavailable_reason(name: str) -> str | None:
    """Why a backend cannot be used here, or ``None`` when it can."""
    try:
        _make(name, None)
    except BackendError as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------- arrays

_NAMESPACES: dict[type, Any] = {}


def array_namespace(*arrays: Any) -> Any:
    """array-api-compat's ``array_namespace``, cached per array type for speed."""
    kind = type(arrays[0])
    xp = _NAMESPACES.get(kind)
    if xp is None or len(arrays) > 1:
        xp = array_api_compat.array_namespace(*arrays)
        _NAMESPACES[kind] = xp
    return xp


def backend_of(x: Any) -> Backend:
    """The backend an array lives on."""
    xp = array_namespace(x)
    for name, library in LIBRARIES.items():
        if library.is_namespace(xp):
            return _make(name, library.device_name(array_api_compat.device(x)))
    raise BackendError(f"arrays of {xp.__name__} are not supported; valid backends: {NAMES}")


def to_numpy(x: Any) -> np.ndarray:
    """Copy an array of any backend to a NumPy array on the host.

    Example:
        >>> portnn.to_numpy(model.predict(x)).shape
    """
    if isinstance(x, np.ndarray):
        return x
    return backend_of(x).to_numpy(x)


def check_device(where: str, x: Any, expected: Backend) -> None:
    """Raise a clear error when ``x`` is not on ``expected``'s namespace and device."""
    if isinstance(x, np.ndarray) and expected.name == "numpy":
        return
    try:
        actual = backend_of(x)
    except (BackendError, TypeError):
        actual = None
    if actual != expected:
        raise DeviceMismatchError(
            f"{where}: got an array on {actual or type(x).__name__} but the parameters live on "
            f"{expected}; move the data with portnn.get_backend({expected.name!r}, "
            f"{expected.device_name!r}).asarray(...) or load the model on that backend"
        )


def on_device(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a method of an object with a ``backend`` (a model) with that backend's device current.

    Example:
        >>> class Sequential:
        ...     @on_device
        ...     def predict(self, x): ...
    """

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.backend.activate():
            return method(self, *args, **kwargs)

    return wrapper


def activate_for(x: Any) -> contextlib.AbstractContextManager[Any]:
    """The device context of the array ``x`` (a no-op for anything that is not a backend array)."""
    if type(x) is np.ndarray:
        return _NO_CONTEXT  # NumPy has no current device: skip the look-up, once per step in a loss
    try:
        return backend_of(x).activate()
    except (BackendError, TypeError):
        return _NO_CONTEXT


_NO_CONTEXT = contextlib.nullcontext()  # reusable and reentrant

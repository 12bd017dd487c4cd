"""What portnn knows about each array library: import, devices, transfer, RNG.

Everything that names numpy, cupy, torch, array_api_strict or jax lives here, so
that the rest of portnn deals only in Array API namespaces. :data:`LIBRARIES` is
the one registry: every other list of libraries derives from it.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

import array_api_compat
import numpy as np

from ._errors import BackendError


class Library:
    """A thin adapter around one array library (subclasses override the hooks)."""

    name = ""
    module = ""
    pip = ""
    compat = ""  # array-api-compat's name for it: ``is_<compat>_namespace``
    mutable = True  # whether ``x *= a`` updates the array itself (False: a new array, JAX)
    compiles = False  # whether fit(jit=...) can compile a step (portnn.training.compiled)

    def load(self) -> Any:
        """Import the library and return its array-api-compat namespace."""
        try:
            importlib.import_module(self.module)
        except ImportError as exc:
            raise BackendError(
                f"backend {self.name!r} needs the package {self.module!r}, which is "
                f"not installed ({exc}). Install it with: pip install {self.pip}"
            ) from None
        from array_api_compat import array_namespace

        return array_namespace(self.from_numpy(np.zeros(1, np.float32), self.default_device()))

    def default_device(self) -> Any:
        raise NotImplementedError

    def devices(self) -> list[str]:
        """Devices usable on this machine, as the strings `device(...)` accepts."""
        return [str(self.default_device())]

    def device(self, spec: Any) -> Any:
        """Parse a device spelling ('cpu', 'cuda', 'cuda:1', 'device1', a device object, ...)."""
        if spec is None:
            return self.default_device()
        name = self.normalize(spec)
        if name not in self.devices():
            raise BackendError(
                f"backend {self.name!r} has no device {name!r}; devices here: {self.devices()}"
            )
        return name

    def normalize(self, spec: Any) -> str:
        """One spelling per device: the string :meth:`device_name` prints."""
        return str(spec)

    def device_name(self, device: Any) -> str:
        """The device as the string :meth:`device` parses back."""
        return str(device)

    def activate(self, device: Any) -> contextlib.AbstractContextManager[Any]:
        """A context in which ``device`` is the library's current device (a no-op by default).

        CuPy puts every result, and array-api-compat's CuPy ``zeros``/``arange``
        every new array, on the *current* device whatever ``device=`` says.
        """
        return _NO_OP

    def check(self, device: Any) -> None:
        """Raise :class:`BackendError` if ``device`` cannot compute (run once, when selected)."""

    def from_numpy(self, array: np.ndarray, device: Any, copy: bool = True) -> Any:
        """A host array on ``device``; ``copy=False`` may share memory with it (read-only data)."""
        raise NotImplementedError

    def to_numpy(self, array: Any) -> np.ndarray:
        return np.asarray(array)

    def is_namespace(self, xp: Any) -> bool:
        """Whether ``xp`` (an array-api-compat namespace) is this library's."""
        return getattr(array_api_compat, f"is_{self.compat or self.name}_namespace")(xp)

    def is_traced(self, array: Any) -> bool:
        """Whether ``array`` is a value being traced into a compiled program (it has no data yet)."""
        return False

    def host_callback(self, fn: Any, array: Any, shape: tuple[int, ...]) -> Any:
        """``fn`` (host array to host array of ``shape``) as a step of the program being traced."""
        raise NotImplementedError(f"the {self.name} backend does not compile")

    def compile(self, fn: Any, donate: tuple[int, ...] = ()) -> Any:
        """``fn`` compiled into one program per argument shape (only where ``compiles``);
        the arrays of the arguments at positions ``donate`` may be reused for its results."""
        raise NotImplementedError(f"the {self.name} backend does not compile")

    def scan(self, body: Any, carry: Any, xs: Any) -> Any:
        """Inside a program being traced: ``body(carry, x) -> (carry, y)`` over the leading axis of
        ``xs``, one loop in the program (``jax.lax.scan``): ``(carry, ys)``."""
        raise NotImplementedError(f"the {self.name} backend does not compile")

    def shapes(self, fn: Any, *args: Any) -> Any:
        """The shapes and dtypes ``fn(*args)`` would return, traced without running it."""
        raise NotImplementedError(f"the {self.name} backend does not compile")

    def generator(self, seed: int | None, device: Any) -> Any:
        return np.random.default_rng(seed)

    def uniform(self, gen: Any, shape: tuple[int, ...], dtype: Any, device: Any) -> tuple[Any, Any]:
        """Uniform [0, 1) float32 samples on ``device`` and the generator to draw from next.

        A stateful generator (NumPy's, torch's, CuPy's) returns itself; a key (JAX's) the next key.
        """
        return self.from_numpy(gen.random(shape, dtype=np.float32), device), gen

    def generator_state(self, gen: Any) -> Any:
        """The state of a generator :meth:`generator` made, as host data for a backup: a JSON-able
        dict, or a NumPy array (:class:`portnn.callbacks.BackupAndRestore`)."""
        return gen.bit_generator.state

    def restore_generator(self, state: Any, device: Any) -> Any:
        """A generator on ``device`` that draws on from ``state`` (:meth:`generator_state`'s)."""
        gen = np.random.default_rng()
        gen.bit_generator.state = state
        return gen


_NO_OP = contextlib.nullcontext()  # reusable and reentrant


def _cuda_name(spec: Any) -> str:
    """``cuda``, ``0``, ``cuda:0``, ``torch.device("cuda", 0)``, ``<CUDA Device 0>`` -> ``cuda:0``."""
    index = getattr(spec, "index", None) if not isinstance(spec, (str, int)) else None
    if index is None and hasattr(spec, "id"):  # a cupy.cuda.Device
        index = spec.id
    if index is not None:
        return f"cuda:{index}"
    text = str(spec).strip().lower()
    if text in ("cuda", "gpu"):
        return "cuda:0"
    if text.isdigit():
        return f"cuda:{text}"
    return text


class NumPy(Library):
    name, module, pip = "numpy", "numpy", "numpy"

    def default_device(self) -> Any:
        return "cpu"

    def from_numpy(self, array: np.ndarray, device: Any, copy: bool = True) -> Any:
        return np.array(array, copy=copy or None)

    def uniform(self, gen: Any, shape: tuple[int, ...], dtype: Any, device: Any) -> tuple[Any, Any]:
        return gen.random(shape, dtype=np.float32), gen


class CuPy(Library):
    name, module = "cupy", "cupy"
    pip = "cupy-cuda12x  (`python -m portnn info` names the wheel for this GPU and driver)"

    # No state of its own: backends.clear_cache() must make the next use check CUDA again.

    def load(self) -> Any:
        from ._cupy_check import diagnose, import_cupy, self_check

        import_cupy(self.pip)
        self_check(0)  # the default device, before anything else touches CUDA
        try:
            return super().load()
        except Exception as exc:
            raise BackendError(diagnose(exc, "array namespace")) from None

    def check(self, device: Any) -> None:
        """An elementwise kernel, a cuBLAS matmul, a cuRAND draw and a synchronize on ``device``."""
        from ._cupy_check import self_check

        if device.id != 0:  # load() has just checked device 0
            self_check(device.id)

    def default_device(self) -> Any:
        import cupy

        return cupy.cuda.Device(0)

    def devices(self) -> list[str]:
        import cupy

        return [f"cuda:{i}" for i in range(cupy.cuda.runtime.getDeviceCount())]

    def normalize(self, spec: Any) -> str:
        return _cuda_name(spec)

    def device(self, spec: Any) -> Any:
        import cupy

        if spec is None:
            return self.default_device()
        return cupy.cuda.Device(int(super().device(spec).partition(":")[2]))

    def device_name(self, device: Any) -> str:
        return f"cuda:{device.id}"

    def activate(self, device: Any) -> contextlib.AbstractContextManager[Any]:
        import cupy

        # A fresh Device per entry: a Device keeps its own stack of previous devices, so a shared
        # one entered from two threads would restore the wrong device.
        return cupy.cuda.Device(device.id)

    def from_numpy(self, array: np.ndarray, device: Any, copy: bool = True) -> Any:
        import cupy

        with self.activate(device):
            return cupy.asarray(array)

    def to_numpy(self, array: Any) -> np.ndarray:
        return array.get()

    def generator(self, seed: int | None, device: Any) -> Any:
        import cupy

        with self.activate(device):
            return cupy.random.default_rng(seed)

    def uniform(self, gen: Any, shape: tuple[int, ...], dtype: Any, device: Any) -> tuple[Any, Any]:
        import cupy

        with self.activate(device):
            return gen.random(shape, dtype=cupy.float32), gen

    def generator_state(self, gen: Any) -> Any:
        raise BackendError("BackupAndRestore cannot save CuPy's dropout generator (cupy.random's "
                           "Generator has no state to read back); train the model without Dropout "
                           "on cupy, or on torch-cuda, to back it up")


class Torch(Library):
    name, module = "torch", "torch"
    pip = "torch  (or, CPU only: pip install torch --index-url https://download.pytorch.org/whl/cpu)"

    def default_device(self) -> Any:
        import torch

        # PyTorch's own default: tensors are made on the CPU unless a device is named, also where
        # CUDA is available. `PORTNN_DEVICE=cuda` (or device="cuda") picks the GPU.
        return torch.device("cpu")

    def devices(self) -> list[str]:
        import torch

        cuda = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return ["cpu", *cuda, "meta"]

    def normalize(self, spec: Any) -> str:
        return _cuda_name(spec) if "cuda" in str(spec).lower() else str(spec).strip().lower()

    def device(self, spec: Any) -> Any:
        import torch

        return self.default_device() if spec is None else torch.device(super().device(spec))

    def from_numpy(self, array: np.ndarray, device: Any, copy: bool = True) -> Any:
        import torch

        return torch.tensor(array, device=device) if copy else torch.as_tensor(array, device=device)

    def to_numpy(self, array: Any) -> np.ndarray:
        if array.device.type == "meta":
            raise BackendError("a tensor on torch's 'meta' device has no data to read back")
        return array.detach().cpu().numpy()

    def generator(self, seed: int | None, device: Any) -> Any:
        import torch

        if device.type == "meta":
            return None  # meta tensors have shapes, not values: nothing to seed
        gen = torch.Generator(device=device)
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(seed)
        return gen

    def uniform(self, gen: Any, shape: tuple[int, ...], dtype: Any, device: Any) -> tuple[Any, Any]:
        import torch

        return torch.rand(shape, generator=gen, device=device, dtype=torch.float32), gen

    def generator_state(self, gen: Any) -> Any:
        return gen.get_state().numpy()  # a uint8 tensor on the CPU, whatever the generator's device

    def restore_generator(self, state: Any, device: Any) -> Any:
        import torch

        gen = torch.Generator(device=device)
        gen.set_state(torch.from_numpy(np.ascontiguousarray(state, dtype=np.uint8)))
        return gen


class ArrayAPIStrict(Library):
    name, module, pip = "array_api_strict", "array_api_strict", "array-api-strict"
    compat = "array_api_strict"

    def default_device(self) -> Any:
        import array_api_strict

        return array_api_strict.Device("CPU_DEVICE")

    def devices(self) -> list[str]:
        import array_api_strict

        return [self.device_name(d) for d in array_api_strict.__array_namespace_info__().devices()]

    def normalize(self, spec: Any) -> str:
        return self.device_name(spec) if hasattr(spec, "_device") else str(spec)

    def device(self, spec: Any) -> Any:
        import array_api_strict

        return self.default_device() if spec is None else array_api_strict.Device(super().device(spec))

    def device_name(self, device: Any) -> str:
        return str(device._device)

    def from_numpy(self, array: np.ndarray, device: Any, copy: bool = True) -> Any:
        import array_api_strict

        return array_api_strict.asarray(array, device=device, copy=copy or None)

    def to_numpy(self, array: Any) -> np.ndarray:
        import array_api_strict

        # array-api-strict refuses __array__ off its CPU device: copy to it first.
        return np.asarray(array_api_strict.asarray(array, device=self.default_device(), copy=True))


class Jax(Library):
    """JAX: immutable arrays (``x *= a`` makes a new one) and compiled steps (``jax.jit``).

    float64 and int64 exist only with ``jax.config.update("jax_enable_x64", True)``
    (or ``JAX_ENABLE_X64=1``); otherwise float64 is a :class:`BackendError` and
    labels are int32. The default device is JAX's: its first accelerator, else the CPU.
    """

    name, module = "jax", "jax"
    pip = "jax  (CUDA: pip install -U 'jax[cuda12]'; on Colab it is preinstalled)"
    mutable, compiles = False, True

    def load(self) -> Any:
        super().load()
        import jax.numpy

        return jax.numpy  # jax.numpy is itself an Array API namespace

    def default_device(self) -> Any:
        import jax

        return jax.devices()[0]

    def _all(self) -> dict[str, Any]:
        import jax

        found: dict[str, Any] = {}
        for platform in ("cpu", "gpu", "tpu"):
            try:
                devices = jax.devices(platform)
            except RuntimeError:  # no such platform here
                continue
            found.update({self.device_name(d): d for d in devices})
        return found

    def devices(self) -> list[str]:
        return list(self._all())

    def normalize(self, spec: Any) -> str:
        if hasattr(spec, "platform"):
            return self.device_name(spec)
        text = str(spec).strip().lower()
        if text in ("cpu:0", "cpu"):
            return "cpu"
        return _cuda_name(text.replace("gpu", "cuda")) if "gpu" in text or "cuda" in text else text

    def device(self, spec: Any) -> Any:
        return self.default_device() if spec is None else self._all()[super().device(spec)]

    def device_name(self, device: Any) -> str:
        if device is None:  # a traced array: the device of the step being compiled
            return _tracing_device_name or self.device_name(self.default_device())
        if device.platform == "cpu":
            return "cpu" if device.id == 0 else f"cpu:{device.id}"
        return f"{'cuda' if device.platform == 'gpu' else device.platform}:{device.id}"

    def activate(self, device: Any) -> contextlib.AbstractContextManager[Any]:
        import jax

        return jax.default_device(device)  # new arrays without device= go there

    def from_numpy(self, array: np.ndarray, device: Any, copy: bool = True) -> Any:
        import jax

        return jax.device_put(array, device)  # immutable: sharing host memory cannot leak writes

    def compile(self, fn: Any, donate: tuple[int, ...] = ()) -> Any:
        import jax

        return jax.jit(fn, donate_argnums=donate)

    def scan(self, body: Any, carry: Any, xs: Any) -> Any:
        import jax

        return jax.lax.scan(body, carry, xs)

    def shapes(self, fn: Any, *args: Any) -> Any:
        import jax

        return jax.eval_shape(fn, *args)

    def is_traced(self, array: Any) -> bool:
        import jax

        return isinstance(array, jax.core.Tracer)

    def host_callback(self, fn: Any, array: Any, shape: tuple[int, ...]) -> Any:
        import jax
        from jax.experimental import io_callback

        # Ordered: every rank runs its collectives in the program's order.
        return io_callback(fn, jax.ShapeDtypeStruct(shape, array.dtype), array, ordered=True)

    def generator(self, seed: int | None, device: Any) -> Any:
        import jax

        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        return jax.device_put(jax.random.key(seed), device)

    def uniform(self, gen: Any, shape: tuple[int, ...], dtype: Any, device: Any) -> tuple[Any, Any]:
        import jax

        gen, key = jax.random.split(gen)
        return jax.random.uniform(key, shape, dtype=jax.numpy.float32), gen

    def generator_state(self, gen: Any) -> Any:
        import jax

        return np.asarray(jax.random.key_data(gen))

    def restore_generator(self, state: Any, device: Any) -> Any:
        import jax

        return jax.device_put(jax.random.wrap_key_data(jax.numpy.asarray(state)), device)


_tracing_device_name: str | None = None  # set by portnn.training.compiled while it traces a step


LIBRARIES: dict[str, Library] = {lib.name: lib for lib in (NumPy(), CuPy(), Torch(), ArrayAPIStrict(), Jax())}

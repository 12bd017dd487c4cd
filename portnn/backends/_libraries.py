"""What portnn knows about each array library: import, devices, transfer, RNG.

Everything that names numpy, cupy, torch or array_api_strict lives here, so
that the rest of portnn deals only in Array API namespaces.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from ._errors import BackendError


class Library:
    """A thin adapter around one array library (subclasses override the hooks)."""

    name = ""
    module = ""
    pip = ""

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

    def device(self, spec: str | None) -> Any:
        """Parse a device string ('cpu', 'cuda:1', 'device1', ...)."""
        if spec is None:
            return self.default_device()
        if spec not in self.devices():
            raise BackendError(
                f"backend {self.name!r} has no device {spec!r}; devices here: {self.devices()}"
            )
        return spec

    def device_name(self, device: Any) -> str:
        """The device as the string :meth:`device` parses back."""
        return str(device)

    def from_numpy(self, array: np.ndarray, device: Any, copy: bool = True) -> Any:
        """A host array on ``device``; ``copy=False`` may share memory with it (read-only data)."""
        raise NotImplementedError

    def to_numpy(self, array: Any) -> np.ndarray:
        return np.asarray(array)

    def generator(self, seed: int | None, device: Any) -> Any:
        return np.random.default_rng(seed)

    def uniform(self, gen: Any, shape: tuple[int, ...], dtype: Any, device: Any) -> Any:
        """Uniform [0, 1) samples on `device`, drawn from the library's own generator."""
        return self.from_numpy(gen.random(shape, dtype=np.float32), device)


class NumPy(Library):
    name, module, pip = "numpy", "numpy", "numpy"

    def default_device(self) -> Any:
        return "cpu"

    def from_numpy(self, array: np.ndarray, device: Any, copy: bool = True) -> Any:
        return np.array(array, copy=copy or None)

    def uniform(self, gen: Any, shape: tuple[int, ...], dtype: Any, device: Any) -> Any:
        return gen.random(shape, dtype=np.float32)


class CuPy(Library):
    name, module, pip = "cupy", "cupy", "cupy-cuda12x  (cupy-cuda11x for a Kepler GPU such as the K80)"

    def load(self) -> Any:
        try:
            import cupy
        except ImportError:
            return super().load()  # raises the not-installed error with the pip command
        try:
            cupy.cuda.runtime.getDeviceCount()
            cupy.zeros(1) + 1  # runs a kernel: the real test of a usable CUDA
        except Exception as exc:
            raise BackendError(
                "backend 'cupy': CuPy is installed but CUDA is not usable here "
                f"({type(exc).__name__}: {exc}). Check `nvidia-smi`, the driver, and that the "
                "CuPy wheel matches the CUDA version (cupy-cuda11x / cupy-cuda12x / "
                "cupy-cuda13x); or pick another backend, e.g. PORTNN_BACKEND=numpy."
            ) from None
        return super().load()

    def default_device(self) -> Any:
        import cupy

        return cupy.cuda.Device(0)

    def devices(self) -> list[str]:
        import cupy

        return [f"cuda:{i}" for i in range(cupy.cuda.runtime.getDeviceCount())]

    def device(self, spec: str | None) -> Any:
        import cupy

        if spec is None:
            return self.default_device()
        spec = super().device(spec if spec.startswith("cuda") else f"cuda:{spec}")
        return cupy.cuda.Device(int(spec.partition(":")[2] or 0))

    def device_name(self, device: Any) -> str:
        return f"cuda:{device.id}"

    def from_numpy(self, array: np.ndarray, device: Any, copy: bool = True) -> Any:
        import cupy

        with device:
            return cupy.asarray(array)

    def to_numpy(self, array: Any) -> np.ndarray:
        return array.get()

    def generator(self, seed: int | None, device: Any) -> Any:
        import cupy

        with device:
            return cupy.random.default_rng(seed)

    def uniform(self, gen: Any, shape: tuple[int, ...], dtype: Any, device: Any) -> Any:
        import cupy

        with device:
            return gen.random(shape, dtype=cupy.float32)


class Torch(Library):
    name, module = "torch", "torch"
    pip = "torch  (or, CPU only: pip install torch --index-url https://download.pytorch.org/whl/cpu)"

    def default_device(self) -> Any:
        import torch

        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def devices(self) -> list[str]:
        import torch

        cuda = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return ["cpu", *cuda, "meta"]

    def device(self, spec: str | None) -> Any:
        import torch

        if spec == "cuda":
            spec = "cuda:0"
        return torch.device(super().device(spec)) if spec else self.default_device()

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

    def uniform(self, gen: Any, shape: tuple[int, ...], dtype: Any, device: Any) -> Any:
        import torch

        return torch.rand(shape, generator=gen, device=device, dtype=torch.float32)


class ArrayAPIStrict(Library):
    name, module, pip = "array_api_strict", "array_api_strict", "array-api-strict"

    def default_device(self) -> Any:
        import array_api_strict

        return array_api_strict.Device("CPU_DEVICE")

    def devices(self) -> list[str]:
        import array_api_strict

        return [self.device_name(d) for d in array_api_strict.__array_namespace_info__().devices()]

    def device(self, spec: str | None) -> Any:
        import array_api_strict

        return array_api_strict.Device(super().device(spec)) if spec else self.default_device()

    def device_name(self, device: Any) -> str:
        return str(device._device)

    def from_numpy(self, array: np.ndarray, device: Any, copy: bool = True) -> Any:
        import array_api_strict

        return array_api_strict.asarray(array, device=device, copy=copy or None)

    def to_numpy(self, array: Any) -> np.ndarray:
        import array_api_strict

        # array-api-strict refuses __array__ off its CPU device: copy to it first.
        return np.asarray(array_api_strict.asarray(array, device=self.default_device(), copy=True))


LIBRARIES: dict[str, Library] = {lib.name: lib for lib in (NumPy(), CuPy(), Torch(), ArrayAPIStrict())}

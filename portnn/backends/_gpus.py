"""What NVIDIA GPUs and driver this machine has, asked of the driver itself, and which CuPy to install.

The driver API (``libcuda``) answers on every driver branch, where ``nvidia-smi``'s
query fields do not: R470, the last driver for the K80, has no ``compute_cap``.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

# CUdevice_attribute values (cuda.h): compute capability major and minor.
_CC_MAJOR, _CC_MINOR = 75, 76
_ERRORS = {3: "CUDA_ERROR_NOT_INITIALIZED", 35: "CUDA_ERROR_INSUFFICIENT_DRIVER",
           100: "CUDA_ERROR_NO_DEVICE", 101: "CUDA_ERROR_INVALID_DEVICE", 999: "CUDA_ERROR_UNKNOWN"}


def probe_driver(lib: Any = None) -> dict[str, Any]:
    """The driver's CUDA version and each GPU's name, memory and compute capability.

    Returns ``{"driver_cuda": (13, 0) | None, "gpus": [{"device", "name", "memory_gib",
    "compute_capability"}, ...], "error": None | "why nothing was found"}``. ``lib`` stands
    in for ``libcuda`` in tests.
    """
    found: dict[str, Any] = {"driver_cuda": None, "gpus": [], "error": None}
    if lib is None:
        try:
            lib = ctypes.CDLL("nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1")
        except OSError as exc:
            found["error"] = f"no NVIDIA driver: libcuda cannot be loaded ({exc})"
            return found
    version = ctypes.c_int()
    if lib.cuDriverGetVersion(ctypes.byref(version)) == 0:
        found["driver_cuda"] = (version.value // 1000, version.value % 1000 // 10)
    rc = lib.cuInit(0)
    count = ctypes.c_int()
    if rc == 0:
        rc = lib.cuDeviceGetCount(ctypes.byref(count))
    if rc != 0:
        found["error"] = f"the driver reports {_ERRORS.get(rc, f'CUDA error {rc}')}"
        return found
    for i in range(count.value):
        dev, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        name, memory = ctypes.create_string_buffer(256), ctypes.c_size_t()
        lib.cuDeviceGet(ctypes.byref(dev), i)
        lib.cuDeviceGetName(name, 256, dev)
        lib.cuDeviceTotalMem_v2(ctypes.byref(memory), dev)
        lib.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, dev)
        lib.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, dev)
        found["gpus"].append({"device": f"cuda:{i}", "name": name.value.decode(errors="replace"),
                              "memory_gib": memory.value / 2**30,
                              "compute_capability": (major.value, minor.value)})
    if not found["gpus"]:
        found["error"] = "the driver sees no GPU"
    return found


def on_colab() -> bool:
    """Running in a Google Colab runtime."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def advice(driver: dict[str, Any], cupy_reason: str | None, wheels: list[str], colab: bool) -> list[str]:
    """What to install for the ``cupy`` backend, one line each.

    Args:
        driver: :func:`probe_driver`'s answer.
        cupy_reason: why ``cupy`` is unusable here, ``None`` when it works.
        wheels: the CuPy packages installed (``["cupy-cuda12x"]``).
        colab: running on Google Colab.
    """
    if cupy_reason is None:
        return [f"CuPy works here ({', '.join(wheels) or 'cupy'}): nothing to install."]
    if colab:
        line = ("Colab: cupy-cuda12x is preinstalled; install no other CuPy package (two CuPy "
                "packages break CuPy).")
        if not driver["gpus"]:
            line += " No GPU in this runtime: Runtime > Change runtime type > T4 GPU."
        return [line]
    if not driver["gpus"]:
        return [f"No NVIDIA GPU found ({driver['error']}): the cupy backend needs one; use numpy or torch."]
    lines = []
    if wheels:
        lines.append(f"Installed but not usable: {', '.join(wheels)}. Remove it first: "
                     f"pip uninstall -y {' '.join(wheels)}")
    cc = min(gpu["compute_capability"] for gpu in driver["gpus"])
    sm = f"sm_{cc[0]}{cc[1]}"
    cuda = driver["driver_cuda"] or (0, 0)
    if cc < (3, 5):
        lines.append(f"{sm}: no CuPy wheel supports GPUs below sm_35; use numpy or torch on the CPU.")
    elif cc < (5, 0):
        lines.append(f"{sm} (Kepler, e.g. the K80): pip install \"cupy-cuda11x<14\" (portnn[cuda11]) "
                     "with a CUDA 11.x toolkit (11.2-11.8) and driver R470, the last for Kepler.")
    elif cuda < (11, 0):
        lines.append(f"The driver supports CUDA {cuda[0]}.{cuda[1]} only: update it to R525 or newer, "
                     "then pip install \"cupy-cuda12x[ctk]\" (portnn[cuda12]).")
    elif cuda < (12, 0):
        lines.append(f"Driver CUDA {cuda[0]}.{cuda[1]}: pip install \"cupy-cuda11x<=13.6\" (portnn[cuda11]) "
                     "with a CUDA 11.x toolkit (11.2-11.8); or update the driver to R525+ for "
                     "cupy-cuda12x.")
    else:
        line = f"Driver CUDA {cuda[0]}.{cuda[1]}: pip install \"cupy-cuda12x[ctk]\" (portnn[cuda12])"
        if cc >= (7, 5) and cuda >= (13, 0):
            line += "; or instead \"cupy-cuda13x[ctk]\" (portnn[cuda13]). One CuPy package only"
        lines.append(line + ".")
    return lines

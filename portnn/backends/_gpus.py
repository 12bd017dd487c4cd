"""What GPUs this machine has, and which CuPy wheel fits them."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any


def cupy_wheel(compute_capability: tuple[int, int], driver_cuda: tuple[int, int] | None = None) -> str:
    """The CuPy wheel for a GPU: Kepler (sm_3x, e.g. the K80's sm_37) needs the CUDA 11 build."""
    if compute_capability < (5, 0):
        return "cupy-cuda11x"
    if driver_cuda is not None and driver_cuda >= (13, 0) and compute_capability >= (7, 5):
        return "cupy-cuda13x"
    return "cupy-cuda12x"


def describe_gpus() -> list[dict[str, Any]]:
    """Name, memory, compute capability and CuPy wheel of each NVIDIA GPU ([] when none)."""
    for probe in (_from_cupy, _from_torch, _from_nvidia_smi):
        try:
            gpus = probe()
        except Exception:  # a probe that cannot run says nothing about the GPU
            continue
        if gpus:
            driver = driver_cuda()
            for gpu in gpus:
                gpu.setdefault("driver_cuda", driver)
                gpu["wheel"] = cupy_wheel(gpu["compute_capability"], gpu["driver_cuda"])
            return gpus
    return []


def driver_cuda() -> tuple[int, int] | None:
    """The newest CUDA version the installed NVIDIA driver supports, asked of libcuda itself."""
    import ctypes

    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
        version = ctypes.c_int()
        if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
            return None
    except (OSError, AttributeError):  # no driver here (or not Linux)
        return None
    return version.value // 1000, version.value % 1000 // 10


def _from_cupy() -> list[dict[str, Any]]:
    import cupy

    version = cupy.cuda.runtime.driverGetVersion()
    driver = (version // 1000, version % 1000 // 10)
    gpus = []
    for i in range(cupy.cuda.runtime.getDeviceCount()):
        props = cupy.cuda.runtime.getDeviceProperties(i)
        gpus.append({"device": f"cuda:{i}", "name": props["name"].decode(),
                     "memory_gib": props["totalGlobalMem"] / 2**30,
                     "compute_capability": (props["major"], props["minor"]), "driver_cuda": driver,
                     "source": "cupy"})
    return gpus


def _from_torch() -> list[dict[str, Any]]:
    import torch

    gpus = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        gpus.append({"device": f"cuda:{i}", "name": props.name, "memory_gib": props.total_memory / 2**30,
                     "compute_capability": (props.major, props.minor), "source": "torch"})
    return gpus


def _from_nvidia_smi() -> list[dict[str, Any]]:
    if shutil.which("nvidia-smi") is None:
        return []
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,compute_cap", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, timeout=10, check=True).stdout
    gpus = []
    for i, line in enumerate(filter(None, out.splitlines())):
        name, mem, cap = (part.strip() for part in line.split(","))
        major, minor = cap.split(".")
        gpus.append({"device": f"cuda:{i}", "name": name, "memory_gib": float(mem) / 1024,
                     "compute_capability": (int(major), int(minor)), "source": "nvidia-smi"})
    return gpus

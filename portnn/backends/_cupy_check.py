"""CuPy's self-check when it is selected, and errors that say which part of CUDA is missing.

``CuPy.load`` used to run one elementwise kernel, so a missing cuBLAS or cuRAND
surfaced later, mid-training, as a confusing error. Here each CUDA component a
training step needs runs once, and a failure is sorted into what the user can
act on: no NVIDIA driver, a driver too old for the wheel, a wheel for another
CUDA major, missing CUDA libraries, or more than one CuPy package.
"""

from __future__ import annotations

import importlib
import re
from importlib import metadata
from typing import Any

from ._errors import BackendError

FALLBACK = "Or pick another backend, e.g. PORTNN_BACKEND=numpy"
# The oldest driver branch for each CUDA major (Linux), from NVIDIA's compatibility table.
MIN_DRIVER = {11: "R450 (450.80)", 12: "R525 (525.60)", 13: "R580 (580.65)"}
_LIBRARY = re.compile(r"lib(nvrtc|cublasLt|cublas|curand|cusparse|cusolver|cufft|cudart|nvJitLink)"
                      r"[\w.-]*?(?:\.so)?\.(\d+)|(nvrtc|cublas|curand)\w*\.dll", re.IGNORECASE)


def import_cupy(pip: str) -> Any:
    """``import cupy``, telling "not installed" apart from "installed but broken"."""
    try:
        return importlib.import_module("cupy")
    except ModuleNotFoundError as exc:
        if exc.name not in (None, "cupy"):  # cupy is there; something it imports is not
            raise BackendError(diagnose(exc, "import")) from None
        raise BackendError(f"backend 'cupy' needs the package 'cupy', which is not installed ({exc}). "
                           f"Install it with: pip install {pip}") from None
    except Exception as exc:  # a broken install: ImportError, or CuPy's RuntimeError/OSError
        raise BackendError(diagnose(exc, "import")) from None


def self_check(index: int) -> None:
    """Run the CUDA components a training step needs on device ``index``; a sorted error if one fails."""
    import cupy

    step = "device count"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        if count <= index:
            raise RuntimeError(f"cudaErrorNoDevice: {count} CUDA device(s), no device {index}")
        with cupy.cuda.Device(index):
            step = "elementwise kernel"
            x = cupy.arange(16, dtype=cupy.float32).reshape(4, 4) * 2 + 1
            step = "matmul (cuBLAS)"
            y = x @ x
            step = "random draw (cuRAND)"
            z = cupy.random.default_rng(0).random((4, 4), dtype=cupy.float32)
            step = "synchronize"
            (y + z).sum()
            cupy.cuda.Device(index).synchronize()
    except Exception as exc:
        raise BackendError(diagnose(exc, step)) from None


def diagnose(exc: BaseException, step: str) -> str:
    """What went wrong in CuPy's ``step`` and what to do, with CuPy's own error text."""
    from ._gpus import probe_driver

    error = f"{type(exc).__name__}: {exc}"
    head = f"backend 'cupy': CuPy is installed but CUDA is not usable here ({step} failed: {error})."
    wheels = installed_cupy()
    wheel = wheels[0] if len(wheels) == 1 else None
    wheel_major = cuda_major(wheel) if wheel else None
    driver = probe_driver()
    driver_cuda = driver.get("driver_cuda")
    text = str(exc)
    if len(wheels) > 1:
        fix = (f"More than one CuPy package is installed ({', '.join(wheels)}); they overwrite each "
               "other's files. Uninstall all of them, then install the one `python -m portnn info` names.")
    elif driver_cuda is None or not driver["gpus"] or "cudaErrorNoDevice" in text:
        why = driver.get("error") or "the driver sees no GPU"
        fix = (f"No NVIDIA driver or GPU here ({why}). Install the NVIDIA driver, or on Colab choose "
               "a GPU runtime (Runtime > Change runtime type > T4 GPU).")
    elif wheel_major and driver_cuda[0] < wheel_major:
        fix = (f"Wrong CUDA major: {wheel} is built for CUDA {wheel_major} but the driver supports "
               f"CUDA {driver_cuda[0]}.{driver_cuda[1]}. Install the wheel for this driver "
               f"(`python -m portnn info` names it) or update the driver to "
               f"{MIN_DRIVER.get(wheel_major, 'a newer one')} or newer.")
    elif "InsufficientDriver" in text or "driver version is insufficient" in text or \
            "UNSUPPORTED_PTX_VERSION" in text.upper():
        fix = (f"The driver (CUDA {driver_cuda[0]}.{driver_cuda[1]}) is too old for {wheel or 'this CuPy'}"
               f": update the NVIDIA driver, or install an older CuPy release built for this driver.")
    elif (found := _LIBRARY.search(text)) is not None:
        lib = found.group(0)
        lib_major = int(found.group(2)) if found.group(2) and found.group(2).isdigit() else None
        # Only these libraries' sonames carry the CUDA major (cuRAND is .so.10 on CUDA 11 and 12).
        tracks_major = (found.group(1) or "").lower() in ("nvrtc", "cublas", "cublaslt", "cudart")
        if wheel_major and lib_major and tracks_major and lib_major != wheel_major:
            fix = (f"Wrong CUDA major: {wheel} is built for CUDA {wheel_major} but asks for {lib}. "
                   "Install the wheel for this machine's CUDA (`python -m portnn info` names it).")
        else:
            major = wheel_major or 12
            ctk = (f"pip install \"cupy-cuda{major}x[ctk]\" (portnn[cuda{major}]) installs them, or "
                   if major >= 12 else "")
            fix = (f"Missing CUDA libraries ({lib} not found): {ctk}install the CUDA {major}.x toolkit "
                   "and put its lib64 folder on LD_LIBRARY_PATH.")
    else:
        fix = ("Check `nvidia-smi` and `python -m portnn info`, which names the CuPy wheel for this "
               "GPU and driver.")
    return f"{head} {fix} {FALLBACK}."


def installed_cupy() -> list[str]:
    """The installed CuPy distributions (``cupy-cuda12x``, ...); more than one breaks CuPy."""
    names = set()
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name == "cupy" or name.startswith("cupy-cuda") or name.startswith("cupy-rocm"):
            names.add(name)
    return sorted(names)


def cuda_major(wheel: str) -> int | None:
    """12 for ``cupy-cuda12x``, 11 for ``cupy-cuda110``; ``None`` for a source build."""
    found = re.fullmatch(r"cupy-cuda(\d\d)\w*", wheel)
    return int(found.group(1)) if found else None

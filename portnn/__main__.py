"""``python -m portnn info``: what portnn can use on this machine."""

from __future__ import annotations

import argparse
import platform
import sys
from importlib import metadata

from . import __version__
from .backends import LIBRARIES, resolve, unavailable_reason
from .backends._gpus import describe_gpus


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def info() -> None:
    """Print versions, usable backends and devices, the selection, and the GPUs."""
    print(f"portnn {__version__} on Python {platform.python_version()} ({sys.platform})")
    for dist in ("numpy", "array-api-compat", "array-api-extra", "array-api-strict", "torch",
                 "cupy-cuda12x", "cupy-cuda11x", "cupy-cuda13x"):
        print(f"  {dist:18} {_version(dist)}")
    print("backends:")
    for name, library in LIBRARIES.items():
        reason = unavailable_reason(name)
        status = f"usable, devices {', '.join(library.devices())}" if reason is None else reason
        print(f"  {name:17} {status}")
    try:
        backend, rule = resolve()
        print(f"selected: {backend} (chosen by {rule})")
    except Exception as exc:  # a bad PORTNN_BACKEND is reported, not raised, here
        print(f"selected: none -- {exc}")
    gpus = describe_gpus()
    if not gpus:
        print("GPUs: none found (CuPy/PyTorch CUDA and nvidia-smi see no NVIDIA GPU)")
    for gpu in gpus:
        major, minor = gpu["compute_capability"]
        driver = gpu.get("driver_cuda")
        driver = f", driver supports CUDA {driver[0]}.{driver[1]}" if driver else ""
        print(f"GPU {gpu['device']}: {gpu['name']}, {gpu['memory_gib']:.1f} GiB, compute capability "
              f"{major}.{minor} (sm_{major}{minor}){driver}; CuPy wheel: pip install {gpu['wheel']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m portnn")
    parser.add_argument("command", choices=["info"], help="info: versions, backends, devices, GPUs")
    parser.parse_args(argv)
    info()
    return 0


if __name__ == "__main__":
    sys.exit(main())

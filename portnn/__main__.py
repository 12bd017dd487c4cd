"""``python -m portnn info``: what portnn can use on this machine, and what to install for the GPU."""

from __future__ import annotations

import argparse
import platform
import sys
from importlib import metadata

from . import __version__
from .backends import LIBRARIES, resolve, unavailable_reason
from .backends._cupy_check import installed_cupy
from .backends._gpus import advice, on_colab, probe_driver


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def info() -> None:
    """Print versions, usable backends and devices, the selection, the GPUs and the CuPy advice."""
    print(f"portnn {__version__} on Python {platform.python_version()} ({sys.platform})")
    wheels = installed_cupy()
    for dist in ("numpy", "array-api-compat", "array-api-extra", "array-api-strict", "torch", "jax", "jaxlib",
                 *(wheels or ["cupy-cuda12x"])):
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
    driver = probe_driver()
    cuda = driver["driver_cuda"]
    if cuda is not None:
        print(f"NVIDIA driver: supports CUDA {cuda[0]}.{cuda[1]}")
    if not driver["gpus"]:
        print(f"GPUs: none found ({driver['error']})")
    for gpu in driver["gpus"]:
        major, minor = gpu["compute_capability"]
        print(f"GPU {gpu['device']}: {gpu['name']}, {gpu['memory_gib']:.1f} GiB, compute capability "
              f"{major}.{minor} (sm_{major}{minor})")
    for line in advice(driver, unavailable_reason("cupy"), wheels, on_colab()):
        print(f"CuPy: {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m portnn")
    parser.add_argument("command", choices=["info"], help="info: versions, backends, devices, GPUs")
    parser.parse_args(argv)
    info()
    return 0


if __name__ == "__main__":
    sys.exit(main())

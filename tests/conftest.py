"""One fixture runs every test on every backend and device this machine has."""

from __future__ import annotations

import os

import numpy as np
import pytest

import portnn
from portnn.backends import BackendError

# (backend, device): the device list every test runs on; unavailable ones skip with the reason.
DEVICES = [
    ("numpy", "cpu"),
    ("array_api_strict", "CPU_DEVICE"),
    ("array_api_strict", "device1"),
    ("array_api_strict", "no_float64"),
    ("torch", "cpu"),
    ("jax", "cpu"),
    ("cupy", "cuda:0"),
    ("torch", "cuda:0"),
]
META = ("torch", "meta")

try:
    import torch as _torch

    # Tests use tiny shapes: extra threads only cost time on a busy 2-core CI machine.
    _torch.set_num_threads(1)
except ImportError:
    pass


def _param(name: str, device: str) -> pytest.param:
    try:
        portnn.get_backend(name, device)
        marks = ()
    except BackendError as exc:
        marks = pytest.mark.skip(reason=f"{name}-{device} unavailable: {exc}")
    return pytest.param((name, device), id=f"{name}-{device}", marks=marks)


def _selected(devices: list[tuple[str, str]]) -> list[pytest.param]:
    """``PORTNN_TEST_DEVICES=cupy-cuda:0,torch-cuda:0`` runs only those ids (benchmarks/gpu_check.py)."""
    wanted = {w.strip() for w in os.environ.get("PORTNN_TEST_DEVICES", "").split(",") if w.strip()}
    known = {f"{name}-{device}" for name, device in [*DEVICES, META]}
    if wanted - known:
        raise pytest.UsageError(f"PORTNN_TEST_DEVICES names unknown ids {sorted(wanted - known)}; "
                                f"known: {sorted(known)}")
    return [_param(*d) for d in devices if not wanted or f"{d[0]}-{d[1]}" in wanted]


@pytest.fixture(params=_selected(DEVICES))
def backend(request) -> portnn.Backend:
    """Each available backend/device, made the active one for the test."""
    with portnn.use_backend(*request.param) as be:
        yield be


@pytest.fixture(params=_selected([*DEVICES, META]))
def any_device(request) -> portnn.Backend:
    """As ``backend`` plus torch's ``meta`` device (shapes only: any host read-back fails)."""
    with portnn.use_backend(*request.param) as be:
        yield be


@pytest.fixture(autouse=True)
def _seeded():
    portnn.seed(0)
    portnn.set_backend(None)
    yield
    portnn.set_backend(None)


@pytest.fixture
def torch():
    """PyTorch for reference values (tests using it skip when it is not installed)."""
    return pytest.importorskip("torch")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """One line counting the skips by reason (absent GPUs, ...) instead of one line per skip."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped or "s" in (config.option.reportchars or ""):
        return  # nothing skipped, or -rs asked for the full list
    reasons: dict[str, int] = {}
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ").split(": ")[0].split(";")[0][:60]
        reasons[reason] = reasons.get(reason, 0) + 1
    counts = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    terminalreporter.write_line(f"{len(skipped)} skipped: {counts} (pytest -rs lists them)")


def has_float64(be: portnn.Backend) -> bool:
    try:
        be.dtype("float64")
    except BackendError:
        return False
    return True


def rtol(be: portnn.Backend) -> float:
    """Tolerance for comparing against a float64 reference: looser where float32 is all there is."""
    return 1e-10 if has_float64(be) else 1e-4


def assert_close(actual, expected, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    np.testing.assert_allclose(portnn.to_numpy(actual), np.asarray(expected), rtol=rtol, atol=atol)

"""benchmarks/gpu_check.py: its no-CUDA exit, and its example and benchmark steps run on the CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_examples import THREADS, synthetic_mnist

import portnn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402


def test_without_cuda_it_says_why_and_exits_2():
    if gpu_check.cuda_backends()[0]:
        pytest.skip("this machine has a usable CUDA device")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[0] == "gpu_check: no usable CUDA device here, so nothing was run."
    assert lines[1] == f"  cupy: {portnn.backends.unavailable_reason('cupy')}"
    assert any(line.startswith("  torch: backend 'torch'") for line in lines)
    assert "python -m portnn info" in lines[-1]


def test_example_step_reports_accuracy_and_epoch_times(tmp_path, monkeypatch):
    for name, value in THREADS.items():
        monkeypatch.setenv(name, value)
    data = synthetic_mnist(tmp_path / "mnist", n_train=300, n_test=100)
    result = gpu_check.run_example("mnist_mlp.py", ["--data", str(data), "--epochs", "2", "--out",
                                                    str(tmp_path)], backend="numpy", device="cpu",
                                   cwd=tmp_path)
    assert result["rc"] == 0
    assert result["accuracy"] >= 0.9  # the synthetic digits are easy
    assert len(result["epoch_seconds"]) == 2 and all(s > 0 for s in result["epoch_seconds"])
    assert (tmp_path / "mnist_mlp.npz").is_file()


def test_benchmark_columns_train_the_same_network(torch):
    """Each column's epochs lower its training loss; the MLPs start at the chance loss ln(10)."""
    for kind, samples, batch in (("mlp", 256, 64), ("cnn", 64, 32)):
        x, y = gpu_check._data(kind, samples)
        runs = gpu_check.runners(kind, ["portnn-numpy", "torch-cpu"], x, y, batch)
        losses = {name: [run() for _ in range(6)] for name, run in runs.items()}
        for name, curve in losses.items():
            assert curve[-1] < curve[0] - 0.05, (kind, name, curve)
            if kind == "mlp":  # the CNN's he_uniform start on unit-variance noise is far from chance
                assert abs(curve[0] - np.log(10)) < 0.5, (kind, name, curve)
    rates = gpu_check.throughput("mlp", ["portnn-numpy", "torch-cpu"], samples=256, batch=128, rounds=1)
    assert set(rates) == {"portnn-numpy", "torch-cpu"} and all(r > 0 for r in rates.values())
    assert gpu_check.benchmark_columns([]) == ["portnn-numpy", "torch-cpu"]
    assert gpu_check.benchmark_columns(["cupy", "torch"]) == [
        "portnn-numpy", "portnn-cupy", "portnn-torch", "torch-cpu", "torch-cuda"]

"""The throughput runs of benchmarks/gpu_check.py: one shuffled epoch of the benchmark MLP or CNN per column.

Columns: ``portnn-numpy`` (the CPU baseline), ``portnn-cupy``, ``portnn-torch`` (torch on
``cuda:0``), ``torch-cpu`` and ``torch-cuda`` (the same network in PyTorch).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

import portnn

MOMENTUM = {"mlp": 0.9, "cnn": 0.0}
Epoch = Callable[[], float]  # one shuffled epoch; returns its mean training loss


def _data(kind: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    shape = (n, 784) if kind == "mlp" else (n, 1, 28, 28)
    return rng.standard_normal(shape).astype(np.float32), rng.integers(0, 10, n)


def portnn_epoch(kind: str, backend: str, device: str, x: np.ndarray, y: np.ndarray, batch: int) -> Epoch:
    """One shuffled ``fit`` epoch of the benchmark network on ``backend``/``device`` (data moved once)."""
    portnn.seed(0)
    with portnn.use_backend(backend, device) as be:
        if kind == "mlp":
            layers = [portnn.Dense(784, 256), portnn.ReLU(), portnn.Dense(256, 128), portnn.ReLU(),
                      portnn.Dense(128, 10)]
        else:
            layers = [portnn.Conv2D(1, 16, 3, padding=1), portnn.ReLU(), portnn.MaxPool2D(2),
                      portnn.Conv2D(16, 32, 3, padding=1), portnn.ReLU(), portnn.MaxPool2D(2),
                      portnn.Flatten(), portnn.Dense(32 * 7 * 7, 10)]
        # The optimizers of bench_mlp.py (SGD, momentum 0.9) and bench_cnn.py (plain SGD).
        model = portnn.Sequential(layers, loss=portnn.CrossEntropy(),
                                  optimizer=portnn.SGD(0.01, MOMENTUM[kind]))
        xd, yd = be.asarray(x), be.asarray(y)
    # fit reads the epoch's loss back once: the GPU has finished when it returns.
    return lambda: model.fit(xd, yd, epochs=1, batch_size=batch, verbose=0)["loss"][-1]


def torch_epoch(kind: str, device: str, x: np.ndarray, y: np.ndarray, batch: int) -> Epoch:
    """The same network and epoch in PyTorch on ``device``."""
    import torch

    torch.manual_seed(0)
    nn = torch.nn
    if kind == "mlp":
        model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                              nn.Linear(128, 10))
    else:
        model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(1568, 10))
    model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=MOMENTUM[kind])
    tx, ty = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)

    def epoch() -> float:
        order = torch.randperm(len(tx), device=device)
        total = torch.zeros((), device=device)
        for start in range(0, len(tx), batch):
            idx = order[start:start + batch]
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(tx[idx]), ty[idx])
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
        return float(total) / len(tx)  # one read-back per epoch, as portnn does; waits for the GPU

    return epoch


def runners(kind: str, columns: list[str], x: np.ndarray, y: np.ndarray, batch: int) -> dict[str, Epoch]:
    """Epoch runners for ``columns`` such as ``portnn-numpy``, ``portnn-cupy``, ``torch-cuda``."""
    made = {}
    for column in columns:
        lib, _, target = column.partition("-")
        if lib == "portnn":
            backend, device = {"numpy": ("numpy", "cpu"), "cupy": ("cupy", "cuda:0"),
                               "torch": ("torch", "cuda:0")}[target]
            made[column] = portnn_epoch(kind, backend, device, x, y, batch)
        else:
            made[column] = torch_epoch(kind, "cuda:0" if target == "cuda" else "cpu", x, y, batch)
    return made


def throughput(kind: str, columns: list[str], samples: int, batch: int, rounds: int) -> dict[str, float]:
    """Samples per second of each column: best of interleaved rounds of one epoch, after a warm-up."""
    x, y = _data(kind, samples)
    runs = runners(kind, columns, x, y, batch)
    for run in runs.values():
        run()  # warm-up: CuPy compiles its kernels, cuBLAS/cuDNN pick algorithms
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: samples / seconds for name, seconds in best.items()}


def benchmark_columns(gpus: list[str]) -> list[str]:
    columns = ["portnn-numpy"]
    columns += ["portnn-cupy"] if "cupy" in gpus else []
    columns += ["portnn-torch"] if "torch" in gpus else []
    try:
        import torch  # noqa: F401

        columns += ["torch-cpu"] + (["torch-cuda"] if "torch" in gpus else [])
    except ImportError:
        pass
    return columns


def ratios(rates: dict[str, float]) -> dict[str, float]:
    """Each GPU column over its CPU baseline, and portnn against PyTorch on the same device."""
    pairs = [("portnn-cupy", "portnn-numpy"), ("portnn-torch", "portnn-numpy"), ("torch-cuda", "torch-cpu"),
             ("portnn-cupy", "torch-cuda"), ("portnn-torch", "torch-cuda"), ("portnn-numpy", "torch-cpu")]
    return {f"{a}/{b}": round(rates[a] / rates[b], 3) for a, b in pairs if a in rates and b in rates}


def report_lines(kind: str, rates: dict[str, float], batch: int) -> list[str]:
    title = {"mlp": "MLP 784-256-128-10", "cnn": "CNN conv16-pool-conv32-pool-dense"}[kind]
    lines = [f"{title}, batch {batch}, float32: training samples/s (speedup over the CPU column)"]
    for name, rate in rates.items():
        cpu = "torch-cpu" if name == "torch-cuda" else "portnn-numpy"
        speedup = f"  {rate / rates[cpu]:6.2f}x {cpu}" if name != cpu and cpu in rates else ""
        lines.append(f"  {name:14s} {rate:10.0f}{speedup}")
    return lines


def pin_threads(threads: int | None, reexec: bool = True) -> str:
    """Run this process with ``threads`` compute threads in every library: NumPy's BLAS, PyTorch
    (``torch.set_num_threads``, left to the caller) and XLA. Returns a description for the report.

    XLA's CPU client sizes its thread pool from the cores the process may run on when it starts;
    jax 0.10.2 ignores ``XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"``
    (a 2048x2048 product burns 2 s of CPU a second with it as without it), so the process is pinned
    to ``threads`` cores before JAX starts. OpenBLAS reads ``OPENBLAS_NUM_THREADS`` when NumPy is
    imported: where it differs, the script is started again (``reexec``) with it set.
    """
    if not threads:
        return f"default threads ({os.cpu_count()} cores)"
    want = str(threads)
    if any(os.environ.get(name) != want for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")):
        if not reexec:
            raise RuntimeError(f"set OPENBLAS_NUM_THREADS={want} OMP_NUM_THREADS={want} before NumPy "
                               "is imported")
        os.environ.update(OPENBLAS_NUM_THREADS=want, OMP_NUM_THREADS=want)
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, *sys.argv])
    if "jax" in sys.modules:
        print("warning: JAX was imported before the process was pinned: XLA may use every core")
    cores = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, cores)
    return f"{threads} thread(s): OPENBLAS_NUM_THREADS={want}, torch {want}, XLA pinned to core(s) {cores}"


def spread(values: list[float], digits: int = 0) -> str:
    """The range and median of the interleaved rounds' figures, and the range as a percentage of the
    median: how much the load moved a column."""
    if len(values) < 2:
        return "(one round: no spread)"
    lo, hi, mid = min(values), max(values), statistics.median(values)
    return (f"rounds {lo:,.{digits}f}-{hi:,.{digits}f}, median {mid:,.{digits}f} "
            f"(spread {(hi - lo) / mid:.0%})")

"""Check portnn on a CUDA machine in one command: tests, MNIST on CuPy, GPU throughput.

    python benchmarks/gpu_check.py            # the whole check (MNIST data as the examples find it)
    python benchmarks/gpu_check.py --quick    # a smoke run: short examples and benchmarks

1. ``python -m portnn info`` (driver, GPUs, the CuPy advice);
2. the whole test suite on ``cupy-cuda:0`` and ``torch-cuda:0`` (``PORTNN_TEST_DEVICES``);
3. ``examples/mnist_mlp.py`` and ``examples/mnist_cnn.py`` on CuPy: test accuracy and
   seconds per epoch (the first epoch, which compiles CuPy's kernels, shown apart);
4. training throughput of the benchmark MLP (784-256-128-10, batch 128) and CNN
   (conv16-pool-conv32-pool-dense, batch 64): portnn on NumPy (the CPU baseline),
   portnn on CuPy, portnn on torch-CUDA, PyTorch CPU and PyTorch CUDA, and the
   speedup of each GPU column over the CPU.

Exit status: 0 when every step passed, 1 when one failed, 2 when this machine has
no usable CUDA device (then nothing runs, and the reason is printed).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import portnn  # noqa: E402  (the checkout's portnn, installed or not)

GPU_IDS = {"cupy": "cupy-cuda:0", "torch": "torch-cuda:0"}
EPOCH = re.compile(r"^epoch (\d+)/(\d+) ")
ACCURACY = re.compile(r"test accuracy=([\d.]+)")


def cuda_backends() -> tuple[list[str], dict[str, str]]:
    """The GPU backends usable here (``["cupy", "torch"]``) and why the others are not."""
    usable, reasons = [], {}
    for name in GPU_IDS:
        try:
            portnn.get_backend(name, "cuda:0")
            usable.append(name)
        except portnn.BackendError as exc:
            reasons[name] = str(exc)
    return usable, reasons


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTNN_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, **extra}


def run_tests(names: list[str], pytest_args: list[str]) -> int:
    """The whole suite restricted to the GPU ids of ``names``; pytest's exit status."""
    ids = ",".join(GPU_IDS[name] for name in names)
    print(f"\n== tests on {ids}", flush=True)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *pytest_args]
    return subprocess.run(cmd, cwd=ROOT, env=_env(PORTNN_TEST_DEVICES=ids)).returncode


def run_example(script: str, flags: list[str], backend: str = "cupy", device: str = "cuda:0",
                cwd: Path | None = None) -> dict[str, object]:
    """Run ``examples/<script>`` and time its epochs from its per-epoch lines as they stream."""
    print(f"\n== examples/{script} on {backend}-{device} {' '.join(flags)}", flush=True)
    env = _env(PORTNN_BACKEND=backend, PORTNN_DEVICE=device)
    if "PORTNN_DATA_DIR" in os.environ:
        env["PORTNN_DATA_DIR"] = os.environ["PORTNN_DATA_DIR"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / script), *flags], cwd=cwd or ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stamps, accuracy, last = [], None, time.perf_counter()
    for line in proc.stdout:
        print("   ", line, end="", flush=True)
        now = time.perf_counter()
        if line.startswith("backend: "):  # printed once the data is loaded: epoch 1 starts here
            last = now
        elif EPOCH.match(line):
            stamps.append(now - last)
            last = now
        elif (found := ACCURACY.search(line)) is not None:
            accuracy = float(found.group(1))
    rc = proc.wait()
    return {"script": script, "rc": rc, "accuracy": accuracy, "epoch_seconds": stamps}


# --------------------------------------------------------------------------- throughput

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


def report(kind: str, rates: dict[str, float], batch: int) -> None:
    title = {"mlp": "MLP 784-256-128-10", "cnn": "CNN conv16-pool-conv32-pool-dense"}[kind]
    print(f"\n{title}, batch {batch}, float32: training samples/s (speedup over the CPU column)")
    for name, rate in rates.items():
        cpu = "torch-cpu" if name == "torch-cuda" else "portnn-numpy"
        speedup = f"  {rate / rates[cpu]:6.2f}x {cpu}" if name != cpu and cpu in rates else ""
        print(f"  {name:14s} {rate:10.0f}{speedup}")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--quick", action="store_true", help="short examples and benchmarks (smoke run)")
    parser.add_argument("--data", default=None, help="MNIST folder (default: as the examples find it)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["tests", "examples", "benchmarks"])
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)

    gpus, reasons = cuda_backends()
    if not gpus:
        print("gpu_check: no usable CUDA device here, so nothing was run.", file=sys.stderr)
        for name, reason in reasons.items():
            print(f"  {name}: {reason}", file=sys.stderr)
        print("Run it on a CUDA machine (e.g. a Colab GPU runtime); `python -m portnn info` says "
              "what to install.", file=sys.stderr)
        return 2
    subprocess.run([sys.executable, "-m", "portnn", "info"], cwd=ROOT, env=_env())
    for name, reason in reasons.items():
        print(f"note: {GPU_IDS[name]} is skipped: {reason}")

    failed = []
    if "tests" not in args.skip and run_tests(gpus, args.pytest_args) != 0:
        failed.append("tests")

    if "examples" not in args.skip and "cupy" in gpus:
        data = ["--data", args.data] if args.data else []
        budget = ["--epochs", "1", "--limit", "5000", "--test-limit", "2000"] if args.quick else []
        results = [run_example("mnist_mlp.py", [*data, *budget, "--out", "runs/gpu_check"]),
                   run_example("mnist_cnn.py", [*data, *budget, "--out", "runs/gpu_check"])]
        print("\nMNIST on cupy-cuda:0: test accuracy, seconds per epoch (first epoch, with kernel "
              "compilation, apart)")
        for r in results:
            secs = r["epoch_seconds"]
            rest = f"{np.mean(secs[1:]):.2f} s/epoch after" if len(secs) > 1 else "no later epochs"
            first = f"{secs[0]:.2f} s first epoch" if secs else "no epoch ran"
            print(f"  {r['script']:13s} accuracy {r['accuracy']}  {first}, {rest}  (exit {r['rc']})")
            if r["rc"] != 0:
                failed.append(r["script"])

    if "benchmarks" not in args.skip:
        columns = benchmark_columns(gpus)
        samples, rounds = (1024, 1) if args.quick else (16384, 5)
        report("mlp", throughput("mlp", columns, samples, 128, rounds), 128)
        report("cnn", throughput("cnn", columns, samples // 4, 64, rounds), 64)

    print(f"\ngpu_check: {'FAILED: ' + ', '.join(failed) if failed else 'all steps passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

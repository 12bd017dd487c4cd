"""Training throughput of a small CNN: portnn on NumPy vs hand-written NumPy vs PyTorch CPU.

The net: conv(1->16, 3x3, pad 1) - ReLU - maxpool 2 - conv(16->32, 3x3, pad 1) - ReLU -
maxpool 2 - flatten - dense(1568->10), softmax cross-entropy, plain SGD, float32,
batch 64 of synthetic 28x28 images. One step is forward + backward + SGD update.

    python benchmarks/bench_cnn.py            # about 25 s on an idle machine
    python benchmarks/bench_cnn.py --quick    # a few steps each (CI smoke run)
    python benchmarks/bench_cnn.py --threads 1   # single-threaded: BLAS, torch and XLA (pinned to a core)

Timings are only meaningful on an otherwise idle machine: both NumPy's BLAS and
PyTorch use every core, and a busy core stalls their thread pools.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
from _throughput import pin_threads, spread
from bench_mlp import compile_note, peak_memory  # the same measures as the MLP's

import portnn

LR = 0.01


def portnn_model() -> portnn.Sequential:
    """The benchmark's CNN on the current backend, seeded."""
    portnn.seed(0)
    return portnn.Sequential([
        portnn.Conv2D(1, 16, 3, padding=1), portnn.ReLU(), portnn.MaxPool2D(2),
        portnn.Conv2D(16, 32, 3, padding=1), portnn.ReLU(), portnn.MaxPool2D(2),
        portnn.Flatten(), portnn.Dense(32 * 7 * 7, 10),
    ], loss=portnn.CrossEntropy(), optimizer=portnn.SGD(LR))


def portnn_step(batch: int, backend: str = "numpy") -> Callable[[np.ndarray, np.ndarray], None]:
    """One portnn training step on ``backend``."""
    with portnn.use_backend(backend) as be:
        model = portnn_model()

    def step(x: np.ndarray, y: np.ndarray) -> None:
        model.train_step(x, y)

    return step if be.name == "numpy" else lambda x, y: step(be.asarray(x), be.asarray(y))


class JaxEpochs:
    """portnn's fit on the JAX backend, compiled: each call trains one epoch over the data set
    (already on the device; an epoch is one program), and counts as that many steps."""

    def __init__(self, data: tuple[np.ndarray, np.ndarray], batch: int) -> None:
        with portnn.use_backend("jax") as be:
            self.model = portnn_model()
            self.x, self.y = be.asarray(data[0]), be.asarray(data[1], dtype=be.index_dtype)
        self.batch, self.batches = batch, len(data[0]) // batch

    def __call__(self, x: np.ndarray | None = None, y: np.ndarray | None = None) -> None:
        self.model.fit(self.x, self.y, epochs=1, batch_size=self.batch, shuffle=False, verbose=0)


# --------------------------------------------------------------------------- hand-written NumPy


def _im2col(x: np.ndarray, k: int) -> np.ndarray:
    """(N, C, H, W) padded input -> (N*oh*ow, C*k*k) patches, for a stride-1 convolution."""
    n, c, h, w = x.shape
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))  # N C oh ow k k
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * (h - k + 1) * (w - k + 1), c * k * k)


def _col2im(cols: np.ndarray, shape: tuple[int, ...], k: int) -> np.ndarray:
    n, c, h, w = shape
    oh, ow = h - k + 1, w - k + 1
    cols = cols.reshape(n, oh, ow, c, k, k)
    dx = np.zeros(shape, cols.dtype)
    for i in range(k):
        for j in range(k):
            dx[:, :, i:i + oh, j:j + ow] += cols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dx


class NumpyCNN:
    """The same net written directly in NumPy: im2col + one GEMM per convolution."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        he = lambda *s: (rng.uniform(-1, 1, s) * np.sqrt(6 / np.prod(s[1:]))).astype(np.float32)  # noqa: E731
        self.p = {"w1": he(16, 1, 3, 3), "b1": np.zeros(16, np.float32),
                  "w2": he(32, 16, 3, 3), "b2": np.zeros(32, np.float32),
                  "w3": he(10, 1568).T.copy(), "b3": np.zeros(10, np.float32)}

    def _conv(self, x, w, b):
        n, _, h, wd = x.shape
        xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        cols = _im2col(xp, 3)
        y = cols @ w.reshape(w.shape[0], -1).T + b
        return y.reshape(n, h, wd, -1).transpose(0, 3, 1, 2), (cols, xp.shape)

    def _conv_back(self, dy, w, cache):
        cols, shape = cache
        d2 = dy.transpose(0, 2, 3, 1).reshape(-1, w.shape[0])
        dw = (d2.T @ cols).reshape(w.shape)
        dx = _col2im(d2 @ w.reshape(w.shape[0], -1), shape, 3)
        return dx[:, :, 1:-1, 1:-1], dw, d2.sum(0)

    @staticmethod
    def _pool(x):
        n, c, h, w = x.shape
        t = x.reshape(n, c, h // 2, 2, w // 2, 2)
        y = t.max(axis=(3, 5))
        mask = t == y[:, :, :, None, :, None]
        return y, mask

    @staticmethod
    def _pool_back(dy, mask):
        n, c, h, _, w, _ = mask.shape
        return (mask * dy[:, :, :, None, :, None]).reshape(n, c, 2 * h, 2 * w)

    def step(self, x: np.ndarray, labels: np.ndarray) -> None:
        p = self.p
        a1, c1 = self._conv(x, p["w1"], p["b1"])
        r1 = np.maximum(a1, 0)
        p1, m1 = self._pool(r1)
        a2, c2 = self._conv(p1, p["w2"], p["b2"])
        r2 = np.maximum(a2, 0)
        p2, m2 = self._pool(r2)
        f = p2.reshape(len(x), -1)
        logits = f @ p["w3"] + p["b3"]
        e = np.exp(logits - logits.max(1, keepdims=True))
        dlogits = e / e.sum(1, keepdims=True)
        dlogits[np.arange(len(x)), labels] -= 1
        dlogits /= len(x)
        g = {"w3": f.T @ dlogits, "b3": dlogits.sum(0)}
        df = (dlogits @ p["w3"].T).reshape(p2.shape)
        dr2 = self._pool_back(df, m2) * (a2 > 0)
        dp1, g["w2"], g["b2"] = self._conv_back(dr2, p["w2"], c2)
        dr1 = self._pool_back(dp1, m1) * (a1 > 0)
        _, g["w1"], g["b1"] = self._conv_back(dr1, p["w1"], c1)
        for k, v in g.items():
            p[k] -= LR * v


def numpy_step(batch: int) -> Callable[[np.ndarray, np.ndarray], None]:
    return NumpyCNN().step


# --------------------------------------------------------------------------- PyTorch


def torch_step(batch: int) -> Callable[[np.ndarray, np.ndarray], None]:
    import torch

    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(1568, 10))
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    def step(x: np.ndarray, y: np.ndarray) -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        opt.step()

    return step


# --------------------------------------------------------------------------- timing


def throughput(step: Callable[[np.ndarray, np.ndarray], None], data: tuple[np.ndarray, np.ndarray],
               batch: int, seconds: float, min_steps: int) -> float:
    """Images per second over repeated training steps on consecutive batches of ``data``."""
    x, y = data
    batches = len(x) // batch
    steps, start = 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < seconds:
        i = steps % batches
        step(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])
        steps += getattr(step, "batches", 1)  # JaxEpochs trains a whole epoch per call
    return steps * batch / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps each (smoke test)")
    parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds per framework")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backend", default="numpy", help="portnn backend (default numpy)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of BLAS, torch and XLA (XLA: the process is pinned to that many cores)")
    args = parser.parse_args(argv)
    pinned = pin_threads(args.threads, reexec=argv is None)
    rounds, min_steps = (1, 2) if args.quick else (args.rounds, 3)
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((8 * args.batch_size, 1, 28, 28)).astype(np.float32),
            rng.integers(0, 10, 8 * args.batch_size))
    makers = {f"portnn-{args.backend}": lambda b: portnn_step(b, args.backend),
              "numpy-handwritten": numpy_step}
    try:
        import torch

        makers["torch-cpu"] = torch_step
        if args.threads:
            torch.set_num_threads(args.threads)
        blas = os.environ.get("OPENBLAS_NUM_THREADS", "default")
        threads = f", torch threads {torch.get_num_threads()}, OPENBLAS_NUM_THREADS {blas}"
    except ImportError:
        threads = ", torch not installed"
    jax_reason = portnn.backends.unavailable_reason("jax")
    if jax_reason is None and args.backend != "jax":
        makers["portnn-jax"] = lambda b: JaxEpochs(data, b)
    elif jax_reason is not None:
        print(f"portnn-jax: jax not installed or unusable, not measured ({jax_reason})")
    if args.quick:
        print("smoke run (--quick): a few steps each, so the ratios below mean nothing")
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    print(f"CNN training throughput (images/s, best of {rounds} interleaved rounds), "
          f"batch {args.batch_size}, float32; {pinned}{threads}; load average {load:.2f} on {cores} cores")
    if load > 0.5 * cores:
        # Multi-threaded BLAS and torch stall (10x and worse) when other processes hold the cores.
        print(f"  warning: load average {load:.1f} on {cores} cores; figures are unreliable "
              f"(compare single-threaded: --threads 1)")
    steps = {name: make(args.batch_size) for name, make in makers.items()}
    # The process's first compile, as a user's first fit pays it (about 1.5 s more than a later one).
    jax_compile = compile_note(lambda: JaxEpochs(data, args.batch_size)) if "portnn-jax" in steps else ""
    for step in steps.values():
        throughput(step, data, args.batch_size, 0.0, 1 if args.quick else 3)  # warm-up (and compile)
    # Interleaved rounds, best kept: load from other processes hits every framework alike.
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            time.sleep(0.05)  # PyTorch's idle threads spin for a while: start on quiet cores
            rates[name].append(throughput(step, data, args.batch_size,
                                          0.0 if args.quick else args.seconds / rounds, min_steps))
    results = {name: max(values) for name, values in rates.items()}
    for name, rate in results.items():
        print(f"  {name:20s} {rate:9.0f}   {spread(rates[name])}")
    if "portnn-jax" in results and "torch-cpu" in results:
        ratio = results["portnn-jax"] / results["torch-cpu"]
        print(f"  portnn-jax / torch-cpu      {ratio:6.2f}x the throughput   (compiled; target >= 1.0x: "
              f"{'met' if ratio >= 1.0 else 'MISSED'}); "
              f"{jax_compile}")
    ours = results[f"portnn-{args.backend}"]
    for name, value in results.items():
        if not name.startswith("portnn"):
            target = "   (target >= 1.0x: " + ("met)" if ours / value >= 1.0 else "MISSED)")
            print(f"  portnn / {name:17s} {ours / value:6.2f}x the throughput"
                  + (target if name == "torch-cpu" else ""))
    xb, yb = data[0][:args.batch_size], data[1][:args.batch_size]
    peaks = {name: peak_memory(lambda step=steps[name]: step(xb, yb))
             for name in (f"portnn-{args.backend}", "numpy-handwritten")} if args.backend == "numpy" else {}
    if peaks:
        ratio = peaks["portnn-numpy"] / peaks["numpy-handwritten"]
        print(f"CNN peak memory of one training step (tracemalloc): portnn "
              f"{peaks['portnn-numpy'] / 2**20:.1f} MiB, hand-written NumPy "
              f"{peaks['numpy-handwritten'] / 2**20:.1f} MiB: {ratio:.2f}x   "
              f"(target <= 1.5x: {'met' if ratio <= 1.5 else 'MISSED'})")
    return results


if __name__ == "__main__":
    main()

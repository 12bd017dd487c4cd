"""Training throughput of an MLP, and per-step overhead of a tiny net: portnn vs NumPy vs PyTorch.

1. MLP 784-256-128-10 (ReLU), softmax cross-entropy, SGD momentum 0.9, batch 128, float32,
   synthetic data: samples/s of ``Sequential.fit`` (shuffled epochs) on the numpy backend,
   the same math written directly in NumPy, and PyTorch CPU.
2. The classic XOR net Dense(2,3)-Tanh-Dense(3,1)-Tanh, MSE, SGD lr 0.1, batch 1: the cost
   of one training step, where the framework's own Python overhead is all there is.

    python benchmarks/bench_mlp.py            # about 20 s on an idle machine
    python benchmarks/bench_mlp.py --quick    # a few steps each (CI smoke run)
    python benchmarks/bench_mlp.py --threads 1   # single-threaded: BLAS, torch and XLA (pinned to a core)

Timings are only meaningful on an otherwise idle machine: both NumPy's BLAS and
PyTorch use every core, and a busy core stalls their thread pools.
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
from _throughput import pin_threads, spread

import portnn

LR, MOMENTUM, SIZES = 0.01, 0.9, (784, 256, 128, 10)
XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_Y = np.array([[0], [1], [1], [0]], np.float32)

Epoch = Callable[[], None]  # one shuffled pass over the data set


# --------------------------------------------------------------------------- MLP


def _mlp_model(backend: str = "numpy") -> portnn.Sequential:
    portnn.seed(0)
    with portnn.use_backend(backend):
        return portnn.Sequential([
            portnn.Dense(784, 256), portnn.ReLU(), portnn.Dense(256, 128), portnn.ReLU(),
            portnn.Dense(128, 10)], loss=portnn.CrossEntropy(), optimizer=portnn.SGD(LR, MOMENTUM))


def portnn_mlp(x: np.ndarray, y: np.ndarray, batch: int) -> Epoch:
    model = _mlp_model()
    epoch = lambda: model.fit(x, y, epochs=1, batch_size=batch, verbose=0)  # noqa: E731
    epoch.step = lambda: model.train_step(x[:batch], y[:batch])
    return epoch


def portnn_jax_mlp(x: np.ndarray, y: np.ndarray, batch: int) -> Epoch:
    """portnn's fit on the JAX backend, compiled (an epoch is one program); data moved once."""
    model = _mlp_model("jax")
    be = model.backend
    xd, yd = be.asarray(x), be.asarray(y, dtype=be.index_dtype)
    return lambda: model.fit(xd, yd, epochs=1, batch_size=batch, verbose=0)


def portnn_steps(x: np.ndarray, y: np.ndarray, batch: int) -> Epoch:
    """portnn doing exactly the hand-written loop's work: its train step over the same gathered
    batches, without fit's data check and accuracy count (the equal-work measure)."""
    model, rng = _mlp_model(), np.random.default_rng(0)
    slots = model.named_parameters()

    def epoch() -> None:
        order = rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            total = total + portnn.training.train_step(model, x[idx], y[idx], slots=slots)[0] * len(idx)
        float(total)

    return epoch


def _glorot(rng: np.random.Generator, n_in: int, n_out: int) -> np.ndarray:
    limit = np.sqrt(6 / (n_in + n_out))
    return rng.uniform(-limit, limit, (n_in, n_out)).astype(np.float32)


def numpy_mlp(x: np.ndarray, y: np.ndarray, batch: int) -> Epoch:
    """The same network, loss and optimizer written directly in NumPy."""
    rng = np.random.default_rng(0)
    p = {}
    for i, (n_in, n_out) in enumerate(zip(SIZES, SIZES[1:], strict=False)):
        p[f"w{i}"], p[f"b{i}"] = _glorot(rng, n_in, n_out), np.zeros(n_out, np.float32)
    velocity = {k: np.zeros_like(v) for k, v in p.items()}

    def step(xb: np.ndarray, yb: np.ndarray) -> float:
        h0 = xb @ p["w0"] + p["b0"]
        a0 = np.maximum(h0, 0)
        h1 = a0 @ p["w1"] + p["b1"]
        a1 = np.maximum(h1, 0)
        logits = a1 @ p["w2"] + p["b2"]
        shifted = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        s = e.sum(axis=1, keepdims=True)
        n = len(xb)
        loss = -(shifted[np.arange(n), yb] - np.log(s[:, 0])).mean()
        d = e / s
        d[np.arange(n), yb] -= 1
        d /= n
        g = {"w2": a1.T @ d, "b2": d.sum(0)}
        d = (d @ p["w2"].T) * (h1 > 0)
        g["w1"], g["b1"] = a0.T @ d, d.sum(0)
        d = (d @ p["w1"].T) * (h0 > 0)
        g["w0"], g["b0"] = xb.T @ d, d.sum(0)
        for k, grad in g.items():
            v = velocity[k]
            v *= MOMENTUM
            v += grad
            p[k] -= LR * v
        return loss

    def epoch() -> None:
        order = rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            total += step(x[idx], y[idx]) * len(idx)
        float(total)

    epoch.step = lambda: step(x[:batch], y[:batch])
    return epoch


def peak_memory(step: Callable[[], object]) -> int:
    """Bytes allocated at the peak of one training step beyond what was live before it
    (tracemalloc sees NumPy's array buffers); a first step creates optimizer state."""
    step()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    step()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


def torch_mlp(x: np.ndarray, y: np.ndarray, batch: int) -> Epoch:
    """The same network, loss and optimizer in PyTorch on the CPU (gpu_check's epoch)."""
    from _throughput import torch_epoch

    return torch_epoch("mlp", "cpu", x, y, batch)


# --------------------------------------------------------------------------- XOR, batch 1


def portnn_xor(epochs: int, backend: str = "numpy") -> Epoch:
    portnn.seed(0)
    with portnn.use_backend(backend):
        model = portnn.Sequential([portnn.Dense(2, 3), portnn.Tanh(), portnn.Dense(3, 1), portnn.Tanh()],
                                  loss=portnn.MSE(), optimizer=portnn.SGD(0.1))
    return lambda: model.fit(XOR_X, XOR_Y, epochs=epochs, batch_size=1, verbose=0)


def portnn_jax_xor(epochs: int) -> Epoch:
    """The same on the JAX backend, compiled (a 4-sample epoch is one program)."""
    return portnn_xor(epochs, "jax")


_JAX_COMPILE = {"seconds": 0.0}  # what jax.monitoring reports for tracing, lowering and XLA compiling


def _jax_compile_listener(event: str, seconds: float, **_: object) -> None:
    if event.startswith("/jax/core/compile/"):
        _JAX_COMPILE["seconds"] += seconds


def compile_seconds(make: Callable[[], Epoch]) -> tuple[float, float]:
    """The first call's extra time over a warm one (what compiling costs a first fit on JAX), and of
    it the seconds JAX itself reports for tracing, lowering and XLA's compile (``jax.monitoring``).
    The first compile of a process is the dearest (XLA starts up): measure it before any other."""
    import jax.monitoring

    if not _JAX_COMPILE.get("listening"):
        jax.monitoring.register_event_duration_secs_listener(_jax_compile_listener)
        _JAX_COMPILE["listening"] = True
    run = make()
    _JAX_COMPILE["seconds"] = 0.0
    start = time.perf_counter()
    run()
    first, jax_seconds = time.perf_counter() - start, _JAX_COMPILE["seconds"]
    start = time.perf_counter()
    run()
    return first - (time.perf_counter() - start), jax_seconds


def compile_note(make: Callable[[], Epoch]) -> str:
    extra, jax_seconds = compile_seconds(make)
    return f"compile: first fit {extra:.2f} s slower than a warm one (JAX reports {jax_seconds:.2f} s)"


def numpy_xor(epochs: int) -> Epoch:
    """The classic from-scratch loop: per-sample forward, backward and SGD in NumPy."""
    rng = np.random.default_rng(0)
    w1, b1 = _glorot(rng, 2, 3), np.zeros(3, np.float32)
    w2, b2 = _glorot(rng, 3, 1), np.zeros(1, np.float32)

    def run() -> None:
        nonlocal w1, b1, w2, b2  # updated in place; the names are only rebound by -=
        for _ in range(epochs):
            total = 0.0
            for i in rng.permutation(4):
                xb, yb = XOR_X[i:i + 1], XOR_Y[i:i + 1]
                a1 = np.tanh(xb @ w1 + b1)
                a2 = np.tanh(a1 @ w2 + b2)
                diff = a2 - yb
                total += np.mean(diff * diff)
                d2 = 2 * diff / diff.size * (1 - a2 * a2)
                d1 = (d2 @ w2.T) * (1 - a1 * a1)
                w2 -= 0.1 * (a1.T @ d2)
                b2 -= 0.1 * d2.sum(0)
                w1 -= 0.1 * (xb.T @ d1)
                b1 -= 0.1 * d1.sum(0)
            float(total)

    return run


def torch_xor(epochs: int) -> Epoch:
    import torch

    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1), nn.Tanh())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tx, ty = torch.from_numpy(XOR_X), torch.from_numpy(XOR_Y)

    def run() -> None:
        for _ in range(epochs):
            total = torch.zeros(())
            for i in torch.randperm(4).tolist():
                opt.zero_grad(set_to_none=True)
                loss = nn.functional.mse_loss(model(tx[i:i + 1]), ty[i:i + 1])
                loss.backward()
                opt.step()
                total += loss.detach()
            float(total)

    return run


# --------------------------------------------------------------------------- timing


def round_times(runs: dict[str, Epoch], rounds: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each runner in each of the interleaved rounds (load hits all alike)."""
    for run in runs.values():
        run()  # warm-up (and JAX's compile)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            time.sleep(0.05)  # PyTorch's idle threads spin for a while: start on quiet cores
            start = time.perf_counter()
            for _ in range(repeats):
                run()
            times[name].append((time.perf_counter() - start) / repeats)
    return times


def best_time(runs: dict[str, Epoch], rounds: int, repeats: int) -> dict[str, float]:
    """Seconds per call of each runner, best of interleaved rounds."""
    return {name: min(t) for name, t in round_times(runs, rounds, repeats).items()}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps each (smoke test)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--samples", type=int, default=4096, help="synthetic training set size")
    parser.add_argument("--rounds", type=int, default=10,
                        help="interleaved timing rounds; the best counts (other load hits all alike)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of BLAS, torch and XLA (XLA: the process is pinned to that many cores)")
    args = parser.parse_args(argv)
    pinned = pin_threads(args.threads, reexec=argv is None)
    quick = args.quick
    samples, rounds = (4 * args.batch_size, 1) if quick else (args.samples, args.rounds)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((samples, 784)).astype(np.float32)
    y = rng.integers(0, 10, samples)
    makers = {"portnn-numpy": portnn_mlp, "portnn-steps": portnn_steps, "numpy-handwritten": numpy_mlp}
    xor_makers = {"portnn-numpy": portnn_xor, "numpy-handwritten": numpy_xor}
    try:
        import torch

        makers["torch-cpu"], xor_makers["torch-cpu"] = torch_mlp, torch_xor
        if args.threads:
            torch.set_num_threads(args.threads)
        threads = f"torch threads {torch.get_num_threads()}"
    except ImportError:
        threads = "torch not installed"
    jax_reason = portnn.backends.unavailable_reason("jax")
    if jax_reason is None:
        makers["portnn-jax"], xor_makers["portnn-jax"] = portnn_jax_mlp, portnn_jax_xor
    else:
        print(f"portnn-jax: jax not installed or unusable, not measured ({jax_reason})")

    threads += f", OPENBLAS_NUM_THREADS {os.environ.get('OPENBLAS_NUM_THREADS', 'default')}"
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > 0.5 * cores:
        # Multi-threaded BLAS and torch stall (10x and worse) when other processes hold the cores.
        print(f"warning: load average {load:.1f} on {cores} cores; figures are unreliable "
              f"(compare single-threaded: --threads 1)")
    if quick:
        print("smoke run (--quick): a few steps each, so the ratios below mean nothing")
    print(f"threads: {pinned}; {threads}; load average {load:.2f} on {cores} cores at the start")
    # The process's first compile: it also pays XLA's one-time start (about 1.5 s of the CNN's).
    jax = "portnn-jax" in makers
    jax_compile = compile_note(lambda: portnn_jax_mlp(x, y, args.batch_size)) if jax else ""
    mlp_rounds = round_times({k: make(x, y, args.batch_size) for k, make in makers.items()}, rounds, 1)
    mlp = {name: min(t) for name, t in mlp_rounds.items()}
    print(f"MLP 784-256-128-10 training throughput (samples/s, best of {rounds} rounds of one "
          f"{samples}-sample epoch), batch {args.batch_size}, float32")
    results = {f"mlp {k}": samples / t for k, t in mlp.items()}
    for name, seconds in mlp.items():
        print(f"  {name:20s} {samples / seconds:9.0f}   {spread([samples / t for t in mlp_rounds[name]])}")
    # The PyTorch target is for its default threads; single-threaded it is only a comparison.
    targets = {"numpy-handwritten": 1.0, "torch-cpu": None if args.threads == 1 else 1.5}
    if "portnn-jax" in mlp:
        jax_ratio = mlp["numpy-handwritten"] / mlp["portnn-jax"]
        results["mlp ratio jax"] = jax_ratio
        print(f"  portnn-jax / numpy-handwritten {jax_ratio:6.2f}x the throughput   (compiled; "
              f"target >= 1.2x: {'met' if jax_ratio >= 1.2 else 'MISSED'}); "
              f"{jax_compile}")
    equal = mlp["numpy-handwritten"] / mlp["portnn-steps"]
    results["mlp ratio equal work"] = equal
    print(f"  portnn-steps / numpy-handwritten {equal:6.2f}x the throughput   (equal work: train steps "
          f"over the same batches, no data check or accuracy; target >= 0.97x: "
          f"{'met' if equal >= 0.97 else 'MISSED'})")
    for name, seconds in mlp.items():
        if name not in ("portnn-numpy", "portnn-steps", "portnn-jax"):
            ratio, target = seconds / mlp["portnn-numpy"], targets[name]
            results[f"mlp ratio {name}"] = ratio
            mark = "" if target is None else \
                f"   (target >= {target}x: {'met' if ratio >= target else 'MISSED'})"
            print(f"  portnn / {name:17s} {ratio:6.2f}x the throughput{mark}")

    epochs = 5 if quick else 250
    xor_rounds = round_times({k: make(epochs) for k, make in xor_makers.items()}, rounds, 1)
    xor = {name: min(t) for name, t in xor_rounds.items()}
    print(f"XOR 2-3-1 tanh, batch 1: microseconds per training step (best of {rounds} rounds of "
          f"{epochs} epochs of 4 samples)")
    for name, seconds in xor.items():
        results[f"xor {name}"] = seconds / (4 * epochs) * 1e6
        print(f"  {name:20s} {results[f'xor {name}']:9.1f}   "
              f"{spread([t / (4 * epochs) * 1e6 for t in xor_rounds[name]], 1)}")
    if "portnn-jax" in xor:
        ratio = xor["numpy-handwritten"] / xor["portnn-jax"]
        results["xor ratio jax"] = ratio
        print(f"  portnn-jax is {ratio:5.2f}x as fast as numpy-handwritten   (compiled, an epoch per "
              f"program; target > 1x: {'met' if ratio > 1 else 'MISSED'}); "
              f"{compile_note(lambda: portnn_jax_xor(1))}")
    for name, seconds in xor.items():
        if name not in ("portnn-numpy", "portnn-jax"):
            ratio = xor["portnn-numpy"] / seconds
            target = "   (target <= 1.3x: " + ("met)" if ratio <= 1.3 else "MISSED)")
            print(f"  portnn / {name:17s} {ratio:6.2f}x the cost"
                  + (target if name == "numpy-handwritten" else ""))

    steps = {k: makers[k](x, y, args.batch_size).step for k in ("portnn-numpy", "numpy-handwritten")}
    peaks = {k: peak_memory(step) for k, step in steps.items()}
    ratio = peaks["portnn-numpy"] / peaks["numpy-handwritten"]
    results["peak ratio"] = ratio
    print(f"MLP peak memory of one training step (tracemalloc, batch {args.batch_size}): portnn "
          f"{peaks['portnn-numpy'] / 2**20:.2f} MiB, hand-written NumPy "
          f"{peaks['numpy-handwritten'] / 2**20:.2f} MiB: {ratio:.2f}x   "
          f"(target <= 1.5x: {'met' if ratio <= 1.5 else 'MISSED'})")
    return results


if __name__ == "__main__":
    main()

"""Cost of summing the MNIST CNN's gradients over ranks: one packed allreduce vs one per parameter.

    mpiexec -n 2 python -m mpi4py benchmarks/bench_allreduce.py
    torchrun --standalone --nproc-per-node=2 benchmarks/bench_allreduce.py
    python benchmarks/bench_allreduce.py --quick          # alone: the size-1 communicator

Prints, on rank 0, the median time per step of :func:`portnn.distributed.reduce_gradients`
(one flat buffer per dtype) and of one allreduce per parameter array. Figures only, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import portnn  # noqa: E402
from portnn import distributed  # noqa: E402


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--quick", action="store_true", help="5 repeats (CI smoke run)")
    args = p.parse_args()
    repeats = 5 if args.quick else args.repeats
    comm = distributed.init()
    import mnist_distributed

    portnn.seed(0)
    model = mnist_distributed.build(argparse.Namespace(lr=1e-3, epochs=1), sync_bn=False)
    rng = np.random.default_rng(comm.rank)
    for layer in model.layers:
        for key, w in layer.params.items():
            layer.grads[key] = model.backend.asarray(rng.normal(size=tuple(w.shape)), dtype="float32")
    arrays = [g for layer in model.layers for g in layer.grads.values()]
    nbytes = sum(int(np.prod(g.shape)) * 4 for g in arrays)
    comm.barrier()
    packed = timed(lambda: distributed.reduce_gradients(model.layers, comm), repeats)
    comm.barrier()
    each = timed(lambda: [comm.allreduce(g) for g in arrays], repeats)
    if comm.is_main:
        print(f"{comm.kind} x{comm.size}, {model.backend}: {nbytes / 1e6:.2f} MB of gradients in "
              f"{len(arrays)} arrays; one packed allreduce {packed * 1e3:.2f} ms per step, "
              f"one per array {each * 1e3:.2f} ms ({each / packed:.1f}x)")


if __name__ == "__main__":
    main()

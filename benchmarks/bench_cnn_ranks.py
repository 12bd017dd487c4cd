"""The CNN of bench_cnn.py on several cores: portnn's data-parallel ranks against PyTorch's threads.

NumPy runs its element-wise passes on one core, so one portnn process uses a second core only
inside matrix products. portnn's way to use more cores is data-parallel processes:

    OPENBLAS_NUM_THREADS=1 mpiexec -n 2 python -m mpi4py benchmarks/bench_cnn_ranks.py
    python benchmarks/bench_cnn_ranks.py          # one process (its default BLAS threads)

Every rank runs ``Sequential.fit`` on its share of each global batch of 64 synthetic images
(gradients summed once per step), a best-of-rounds epoch of 4096 images. Then the other ranks
exit and rank 0 times PyTorch's own step on the same net and batch with as many threads as
there were ranks (``bench_cnn.torch_step``), on the cores the ranks left free.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from portnn import distributed

sys.path.insert(0, str(Path(__file__).parent))
import bench_cnn  # noqa: E402  (the same net, the same PyTorch step and timing loop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps (smoke test)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    comm = distributed.init()
    samples, rounds, batch = (256, 1, 64) if args.quick else (4096, args.rounds, 64)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((samples, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, samples)
    model = bench_cnn.portnn_model()
    model.fit(x[:4 * batch], y[:4 * batch], epochs=1, batch_size=batch, verbose=0, distributed=comm)
    ours = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        model.fit(x, y, epochs=1, batch_size=batch, verbose=0, distributed=comm)
        ours = max(ours, samples / (time.perf_counter() - start))
    if not comm.is_main:
        return  # leave the cores to PyTorch
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    print(f"CNN of bench_cnn.py, global batch {batch}, images/s (best of {rounds} epochs of "
          f"{samples} images), OPENBLAS_NUM_THREADS {blas} per rank")
    if blas != "1":
        print("  warning: set OPENBLAS_NUM_THREADS=1, or the ranks' BLAS threads outnumber the "
              "cores and PyTorch gets fewer threads than portnn")
    print(f"  portnn fit, {comm.kind} communicator, {comm.size} rank(s)  {ours:9.0f}")
    try:
        import torch
    except ImportError:
        print("  torch not installed: no PyTorch comparison")
        return
    time.sleep(0.5)  # the other ranks exit
    torch.set_num_threads(comm.size)
    step = bench_cnn.torch_step(batch)
    bench_cnn.throughput(step, (x, y), batch, 0.0, 3)  # warm-up
    theirs = max(bench_cnn.throughput(step, (x, y), batch, 0.0 if args.quick else 2.0, 2)
                 for _ in range(rounds))
    print(f"  PyTorch step, {comm.size} thread(s)  {theirs:17.0f}")
    print(f"  portnn / PyTorch {ours / theirs:6.2f}x the throughput")


if __name__ == "__main__":
    main()

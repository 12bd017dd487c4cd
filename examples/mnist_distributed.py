"""MNIST CNN trained data-parallel: N processes, one global batch, the weights of one process.

    python examples/mnist_distributed.py                              # alone: a size-1 communicator
    mpiexec -n 2 python -m mpi4py examples/mnist_distributed.py       # 2 ranks over MPI
    torchrun --standalone --nproc-per-node=2 examples/mnist_distributed.py
    mpiexec -n 2 python -m mpi4py examples/mnist_distributed.py --epochs 1 --limit 640 --min-accuracy 0.5

Every rank loads the same data and takes its slice of each global batch of
``--batch-size`` samples; gradients are summed between backward and the
optimizer step. Rank 0 prints, evaluates with the others (sharded) and saves
``runs/mnist_distributed.npz``. ``--sync-bn`` normalises over the global batch.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
from pathlib import Path

import _mnist

import portnn
from portnn import distributed


def build(args, sync_bn: bool) -> portnn.Sequential:
    """The CNN of ``mnist_cnn.py``: conv-BatchNorm-ReLU-maxpool x2, dropout, dense."""
    return portnn.Sequential([
        portnn.Conv2D(1, 16, 3, padding=1), portnn.BatchNorm(16, sync=sync_bn), portnn.ReLU(),
        portnn.MaxPool2D(2),                                        # 16 x 14 x 14
        portnn.Conv2D(16, 32, 3, padding=1), portnn.BatchNorm(32, sync=sync_bn), portnn.ReLU(),
        portnn.MaxPool2D(2),                                        # 32 x 7 x 7
        portnn.Flatten(), portnn.Dropout(0.25),
        portnn.Dense(32 * 7 * 7, 128, init="he_uniform"), portnn.ReLU(), portnn.Dropout(0.25),
        portnn.Dense(128, 10),
    ], loss=portnn.CrossEntropy(), optimizer=portnn.Adam(portnn.CosineDecay(args.lr, args.epochs)))


def main(argv: list[str] | None = None) -> None:
    p = _mnist.parser(__doc__, epochs=3, batch_size=128, lr=1e-3)
    p.add_argument("--sync-bn", action="store_true", help="BatchNorm statistics over the global batch")
    args = p.parse_args(argv)
    comm = distributed.init()
    started = time.perf_counter()
    portnn.seed(args.seed)  # the same seed everywhere: one shuffle order (rank 0's is used)
    quiet = contextlib.nullcontext() if comm.is_main else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        x, y, x_test, y_test = _mnist.load(args, flatten=False)
    model = build(args, args.sync_bn)
    if comm.is_main:
        grads = sum(w.size for layer in model.layers for w in layer.params.values())
        print(f"{comm.kind} communicator, {comm.size} rank(s); {grads:,} parameters: "
              f"{4 * grads / 1e6:.2f} MB of float32 gradients summed per step in one allreduce")
    t0 = time.perf_counter()
    model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, verbose=args.verbose,
              distributed=comm)
    seconds = time.perf_counter() - t0
    result = model.evaluate(x_test, y_test, batch_size=1000, distributed=comm)
    out = Path(args.out) / "mnist_distributed.npz"
    if comm.is_main:
        out.parent.mkdir(parents=True, exist_ok=True)
        model.save(out)
        print(f"training: {args.epochs * len(x) / seconds:,.0f} samples/s over {comm.size} rank(s) "
              f"({seconds:.1f} s)")
        print(f"test loss={result['loss']:.4f} test accuracy={result['accuracy']:.4f} "
              f"({time.perf_counter() - started:.1f} s); checkpoint {out}")
    comm.barrier()  # the checkpoint is complete before any rank goes on
    if args.min_accuracy is not None and result["accuracy"] < args.min_accuracy:
        sys.exit(f"test accuracy {result['accuracy']:.4f} is below --min-accuracy {args.min_accuracy}")


if __name__ == "__main__":
    try:
        main()
    except portnn.BackendError as exc:
        sys.exit(f"portnn: {exc}")

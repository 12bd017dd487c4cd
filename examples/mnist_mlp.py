"""MNIST with a 784-256-128-10 ReLU network, softmax cross-entropy and Nesterov SGD (~98% test accuracy).

    python examples/mnist_mlp.py                                   # full run
    python examples/mnist_mlp.py --epochs 2 --limit 2000 --min-accuracy 0.8
"""

from __future__ import annotations

import sys
import time

import _mnist

import portnn


def main(argv: list[str] | None = None) -> None:
    args = _mnist.parser(__doc__, epochs=15, batch_size=128, lr=0.1).parse_args(argv)
    started = time.perf_counter()
    portnn.seed(args.seed)
    x, y, x_test, y_test = _mnist.load(args, flatten=True)
    model = portnn.Sequential(
        [portnn.Dense(784, 256, init="he_uniform"), portnn.ReLU(),
         portnn.Dense(256, 128, init="he_uniform"), portnn.ReLU(),
         portnn.Dense(128, 10)],
        loss=portnn.CrossEntropy(),
        optimizer=portnn.SGD(portnn.CosineDecay(args.lr, args.epochs), momentum=0.9, nesterov=True))
    model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size,
              validation_data=(x_test, y_test), verbose=args.verbose)
    _mnist.finish(model, args, "mnist_mlp", x_test, y_test, started)


if __name__ == "__main__":
    try:
        main()
    except portnn.BackendError as exc:  # e.g. PORTNN_BACKEND=cupy without CUDA: the reason, no traceback
        sys.exit(f"portnn: {exc}")

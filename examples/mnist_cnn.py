"""MNIST with a small CNN: two conv-BatchNorm-ReLU-maxpool blocks, dropout and a dense head (~99%).

    python examples/mnist_cnn.py                                   # full run
    python examples/mnist_cnn.py --epochs 1 --limit 1000 --test-limit 500 --min-accuracy 0.5
"""

from __future__ import annotations

import sys
import time

import _mnist

import portnn


def main(argv: list[str] | None = None) -> None:
    args = _mnist.parser(__doc__, epochs=5, batch_size=64, lr=1e-3).parse_args(argv)
    started = time.perf_counter()
    portnn.seed(args.seed)
    x, y, x_test, y_test = _mnist.load(args, flatten=False)
    model = portnn.Sequential([
        portnn.Conv2D(1, 16, 3, padding=1), portnn.BatchNorm(16), portnn.ReLU(),
        portnn.MaxPool2D(2),                                        # 16 x 14 x 14
        portnn.Conv2D(16, 32, 3, padding=1), portnn.BatchNorm(32), portnn.ReLU(),
        portnn.MaxPool2D(2),                                        # 32 x 7 x 7
        portnn.Flatten(), portnn.Dropout(0.25),
        portnn.Dense(32 * 7 * 7, 128, init="he_uniform"), portnn.ReLU(), portnn.Dropout(0.25),
        portnn.Dense(128, 10),
    ], loss=portnn.CrossEntropy(), optimizer=portnn.Adam(portnn.CosineDecay(args.lr, args.epochs)))
    model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, verbose=args.verbose)
    _mnist.finish(model, args, "mnist_cnn", x_test, y_test, started)


if __name__ == "__main__":
    try:
        main()
    except portnn.BackendError as exc:  # e.g. PORTNN_BACKEND=cupy without CUDA: the reason, no traceback
        sys.exit(f"portnn: {exc}")

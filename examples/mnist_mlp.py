"""MNIST with a 784-256-128-10 ReLU network, softmax cross-entropy and Nesterov SGD (~98% test accuracy).

The last 5000 training images are held out for validation: EarlyStopping
watches the validation accuracy (and restores the best epoch's weights) and
ModelCheckpoint keeps the best epoch in runs/mnist_mlp_best.npz.

    python examples/mnist_mlp.py                                   # full run
    python examples/mnist_mlp.py --epochs 2 --limit 2000 --min-accuracy 0.8
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import _mnist

import portnn
from portnn.callbacks import EarlyStopping, ModelCheckpoint


def main(argv: list[str] | None = None) -> None:
    p = _mnist.parser(__doc__, epochs=15, batch_size=128, lr=0.1)
    p.add_argument("--val", type=int, default=5000,
                   help="hold out this many training images for validation (default 5000; a tenth "
                        "of --limit when smaller)")
    p.add_argument("--patience", type=int, default=3, help="EarlyStopping patience in epochs")
    args = p.parse_args(argv)
    started = time.perf_counter()
    portnn.seed(args.seed)
    x, y, x_test, y_test = _mnist.load(args, flatten=True)
    n_val = min(args.val, len(x) // 10)
    x, x_val, y, y_val = x[:-n_val], x[-n_val:], y[:-n_val], y[-n_val:]
    model = portnn.Sequential(
        [portnn.Dense(784, 256, init="he_uniform"), portnn.ReLU(),
         portnn.Dense(256, 128, init="he_uniform"), portnn.ReLU(),
         portnn.Dense(128, 10)],
        loss=portnn.CrossEntropy(),
        optimizer=portnn.SGD(portnn.CosineDecay(args.lr, args.epochs), momentum=0.9, nesterov=True))
    model.summary(input_shape=(784,))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    best = Path(args.out) / "mnist_mlp_best.npz"
    model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, validation_data=(x_val, y_val),
              verbose=args.verbose,
              callbacks=[EarlyStopping(monitor="val_accuracy", patience=args.patience,
                                       restore_best_weights=True),
                         ModelCheckpoint(best, monitor="val_accuracy", save_best_only=True)])
    print(f"best epoch by validation accuracy: {best}")
    _mnist.finish(model, args, "mnist_mlp", x_test, y_test, started)


if __name__ == "__main__":
    try:
        main()
    except portnn.BackendError as exc:  # e.g. PORTNN_BACKEND=cupy without CUDA: the reason, no traceback
        sys.exit(f"portnn: {exc}")

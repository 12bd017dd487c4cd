"""XOR with the classic 2-3-1 tanh network, trained one sample at a time with MSE and SGD.

    python examples/xor.py                         # 1000 epochs, a line every 100th
    PORTNN_BACKEND=torch python examples/xor.py --epochs 300 --verbose 100 --min-accuracy 1
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import portnn

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
Y = np.array([[0], [1], [1], [0]], np.float32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=100, help="print every n-th epoch (0: silent)")
    parser.add_argument("--min-accuracy", type=float, default=None,
                        help="exit with status 1 if the final accuracy is below this")
    args = parser.parse_args(argv)

    portnn.seed(args.seed)
    print(f"backend: {portnn.get_backend()}")
    model = portnn.Sequential(
        [portnn.Dense(2, 3), portnn.Tanh(), portnn.Dense(3, 1), portnn.Tanh()],
        loss=portnn.MSE(), optimizer=portnn.SGD(args.lr))
    model.fit(X, Y, epochs=args.epochs, batch_size=1, shuffle=False, verbose=args.verbose)

    pred = portnn.to_numpy(model.predict(X))[:, 0]
    for x, p in zip(X, pred, strict=True):
        print(f"{int(x[0])} xor {int(x[1])} -> {p:.4f}")
    accuracy = float(np.mean((pred > 0.5) == (Y[:, 0] > 0.5)))
    print(f"accuracy={accuracy:.4f}")
    if args.min_accuracy is not None and accuracy < args.min_accuracy:
        sys.exit(f"accuracy {accuracy:.4f} is below --min-accuracy {args.min_accuracy}")


if __name__ == "__main__":
    try:
        main()
    except portnn.BackendError as exc:  # e.g. PORTNN_BACKEND=cupy without CUDA: the reason, no traceback
        sys.exit(f"portnn: {exc}")

"""A 3-4-1 sigmoid network learns a 3-input table by full-batch gradient descent on the sum of squares.

    inputs   (0,0,1) (0,1,1) (1,0,1) (1,1,1)
    target      0       1       1       0        (XOR of the first two; the third is constant)

portnn's ``MSE`` is the *mean* of the squared errors; the sum of squares over
the N = 4 rows is ``N * MSE``, so a step of ``lr`` on the sum is a step of
``N * lr`` on the mean. The loss-per-iteration plot is saved to ``--out``.

    python examples/sum_of_squares.py                               # 1500 iterations
    python examples/sum_of_squares.py --iterations 300 --min-accuracy 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import portnn

X = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]], np.float32)
Y = np.array([[0], [1], [1], [0]], np.float32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=1.0, help="step size on the sum of squares")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--verbose", type=int, default=100, help="print every n-th iteration (0: silent)")
    parser.add_argument("--out", default="runs", help="folder for sum_of_squares.png (default: runs/)")
    parser.add_argument("--min-accuracy", type=float, default=None,
                        help="exit with status 1 if the final accuracy is below this")
    args = parser.parse_args(argv)

    portnn.seed(args.seed)
    print(f"backend: {portnn.get_backend()}")
    n = len(X)
    model = portnn.Sequential(
        [portnn.Dense(3, 4), portnn.Sigmoid(), portnn.Dense(4, 1), portnn.Sigmoid()],
        loss=portnn.MSE(), optimizer=portnn.SGD(args.lr * n))
    history = model.fit(X, Y, epochs=args.iterations, batch_size=None, shuffle=False,
                        verbose=args.verbose)
    sse = [n * mse for mse in history["loss"]]

    pred = portnn.to_numpy(model.predict(X))[:, 0]
    for x, p in zip(X.astype(int).tolist(), pred, strict=True):
        print(f"{tuple(x)} -> {p:.4f}")
    accuracy = float(np.mean((pred > 0.5) == (Y[:, 0] > 0.5)))
    print(f"sum of squares={sse[-1]:.6f} accuracy={accuracy:.4f}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(1, len(sse) + 1), sse)
    ax.set_xlabel("iteration")
    ax.set_ylabel("sum of squared errors")
    ax.set_title("3-4-1 sigmoid network")
    fig.tight_layout()
    fig.savefig(out / "sum_of_squares.png", dpi=80)
    plt.close(fig)
    print(f"loss plot: {out / 'sum_of_squares.png'}")
    if args.min_accuracy is not None and accuracy < args.min_accuracy:
        sys.exit(f"accuracy {accuracy:.4f} is below --min-accuracy {args.min_accuracy}")


if __name__ == "__main__":
    try:
        main()
    except portnn.BackendError as exc:  # e.g. PORTNN_BACKEND=cupy without CUDA: the reason, no traceback
        sys.exit(f"portnn: {exc}")

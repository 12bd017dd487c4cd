"""Two noisy moons, one tanh hidden layer of 1 to 50 units: decision boundaries as the layer grows.

The classic "neural network from scratch" setting: 200 samples, softmax
cross-entropy, L2 0.01, learning rate 0.01, full-batch gradient descent. The
classic gradient is that of the *summed* loss; portnn's losses are means over
the batch, so the same steps are ``lr = 0.01 * N`` and ``weight_decay = 0.01 / N``.

    python examples/moons.py                                        # 20000 epochs per size
    python examples/moons.py --epochs 500 --hidden 3 --min-accuracy 0.8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import portnn

LR, L2 = 0.01, 0.01  # per summed-loss step, as in the classic


def train(x: np.ndarray, y: np.ndarray, hidden: int, epochs: int, verbose: int) -> portnn.Sequential:
    """A 2-hidden-2 tanh network fitted to ``(x, y)`` by full-batch gradient descent."""
    n = len(x)
    model = portnn.Sequential([portnn.Dense(2, hidden), portnn.Tanh(), portnn.Dense(hidden, 2)],
                              loss=portnn.CrossEntropy(),
                              optimizer=portnn.SGD(LR * n, weight_decay=L2 / n))
    model.fit(x, y, epochs=epochs, batch_size=None, shuffle=False, verbose=verbose)
    return model


def plot(panels: list[tuple[int, portnn.Sequential, float]], x: np.ndarray, y: np.ndarray,
         path: Path) -> None:
    """One decision-boundary panel per hidden-layer size (:func:`portnn.plot.decision_boundary`)."""
    import matplotlib.pyplot as plt

    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (hidden, model, acc) in zip(axes.flat, panels, strict=False):
        portnn.plot.decision_boundary(model, x, y, ax=ax,
                                      title=f"hidden layer size {hidden} (accuracy {acc:.2f})")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20000)
    parser.add_argument("--hidden", type=int, nargs="+", default=[1, 2, 3, 4, 5, 20, 50])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=5000, help="print every n-th epoch (0: silent)")
    parser.add_argument("--out", default="runs", help="folder for moons.png (default: runs/)")
    parser.add_argument("--min-accuracy", type=float, default=None,
                        help="exit with status 1 if any size >= 3 ends below this training accuracy")
    args = parser.parse_args(argv)

    portnn.seed(args.seed)
    print(f"backend: {portnn.get_backend()}")
    x, y = portnn.data.make_moons(args.samples, noise=0.2, seed=args.seed)
    panels = []
    for hidden in args.hidden:
        print(f"-- hidden layer size {hidden}")
        model = train(x, y, hidden, args.epochs, args.verbose)
        acc = model.evaluate(x, y)["accuracy"]
        print(f"hidden={hidden} accuracy={acc:.4f}")
        panels.append((hidden, model, acc))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(panels, x, y, out / "moons.png")
    print(f"decision boundaries: {out / 'moons.png'}")
    # One or two tanh units cannot bend around the moons; the floor applies from three on.
    low = [(h, a) for h, _, a in panels if h >= 3 and args.min_accuracy is not None and a < args.min_accuracy]
    if low:
        sys.exit(f"accuracy below --min-accuracy {args.min_accuracy}: {low}")


if __name__ == "__main__":
    try:
        main()
    except portnn.BackendError as exc:  # e.g. PORTNN_BACKEND=cupy without CUDA: the reason, no traceback
        sys.exit(f"portnn: {exc}")

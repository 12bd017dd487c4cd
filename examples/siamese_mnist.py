"""A siamese network on MNIST pairs: are two digits the same? (the book's chapter 7, on digits).

Two inputs go through one shared encoder (the same layer objects called twice, so one set of
weights whose gradient sums over both uses) into 32-number embeddings. Their element-wise
product (portnn.Multiply) feeds one Dense unit: a learned, weighted dot product, trained as
a logit with BinaryCrossEntropy. Each training image gets a partner: the same digit for half
of them, another digit for the rest, drawn from a seeded generator. Prints the test pair accuracy (about
97%) and saves a figure of test pairs with their predicted similarity.

    python examples/siamese_mnist.py                               # 60000 pairs, 5 epochs
    python examples/siamese_mnist.py --epochs 1 --limit 2000 --test-limit 500 --min-accuracy 0.7
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import _mnist
import numpy as np

import portnn


def pairs(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Each image with a partner: the same digit for half of them (at random), another digit for
    the rest. Returns ``[left, right]`` and the targets (1.0: the same digit), shape ``(N, 1)``."""
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(y == k) for k in range(10)]
    same = rng.random(len(y)) < 0.5
    # The partner's class: the image's own, or another one (an offset of 1..9 from it).
    partner_class = np.where(same, y, (y + rng.integers(1, 10, len(y))) % 10)
    partner = np.array([rng.choice(by_class[k]) for k in partner_class])
    return [x, x[partner]], same.astype(np.float32).reshape(-1, 1)


def build(lr: float, epochs: int) -> portnn.Model:
    left, right = portnn.Input((784,), name="left"), portnn.Input((784,), name="right")
    encoder = portnn.Sequential([portnn.Dense(784, 128, init="he_uniform"), portnn.ReLU(),
                                 portnn.Dense(128, 32), portnn.Tanh()])
    joined = portnn.Multiply()([encoder(left), encoder(right)])  # one encoder, called twice
    return portnn.Model([left, right], portnn.Dense(32, 1)(joined),
                        loss=portnn.BinaryCrossEntropy(from_logits=True),
                        optimizer=portnn.Adam(portnn.CosineDecay(lr, epochs)))


def figure(x: list[np.ndarray], same: np.ndarray, p: np.ndarray, path: Path) -> None:
    """Test pairs side by side, each titled with its predicted similarity (green: right)."""
    import matplotlib.pyplot as plt

    n = len(p)
    fig, axes = plt.subplots(2, n, figsize=(1.2 * n, 3))
    for c in range(n):
        for r in range(2):
            axes[r, c].imshow(x[r][c].reshape(28, 28), cmap="gray")
            axes[r, c].axis("off")
        right = (p[c] > 0.5) == (same[c] > 0.5)
        axes[0, c].set_title(f"p={p[c]:.2f}", fontsize=9, color="green" if right else "red")
    fig.suptitle("predicted probability that the two digits are the same", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    args = _mnist.parser(__doc__, epochs=5, batch_size=128, lr=2e-3).parse_args(argv)
    started = time.perf_counter()
    portnn.seed(args.seed)
    x, y, x_test, y_test = _mnist.load(args, flatten=True)
    model = build(args.lr, args.epochs)
    model.summary()
    x_pairs, same = pairs(x, y, seed=args.seed)
    model.fit(x_pairs, same, epochs=args.epochs, batch_size=args.batch_size, verbose=args.verbose)
    test_pairs, test_same = pairs(x_test, y_test, seed=10_000)
    logits = portnn.to_numpy(model.predict([a[:10] for a in test_pairs]))[:, 0]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    figure([a[:10] for a in test_pairs], test_same[:10, 0], 1 / (1 + np.exp(-logits)),
           Path(args.out) / "siamese_mnist.png")
    _mnist.finish(model, args, "siamese_mnist", test_pairs, test_same, started)


if __name__ == "__main__":
    try:
        main()
    except portnn.BackendError as exc:  # e.g. PORTNN_BACKEND=cupy without CUDA: the reason, no traceback
        sys.exit(f"portnn: {exc}")

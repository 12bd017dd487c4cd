"""A convolutional denoising autoencoder on MNIST: noisy digits in, clean digits out.

The book's chapter 5: an encoder (two Conv2D-ReLU-MaxPool2D blocks, 28x28 down to 8 maps of 7x7)
and a decoder (two stride-2 Conv2DTranspose layers back up to 28x28, then a Sigmoid), trained with
MSE to map digits with Gaussian noise to the clean ones. Prints the test reconstruction MSE next
to the noisy input's and saves a figure of noisy / denoised / original rows.

    python examples/autoencoder_mnist.py                           # 5 epochs on 10000 images
    python examples/autoencoder_mnist.py --epochs 1 --limit 1000 --test-limit 200
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import _mnist
import numpy as np

import portnn


def noisy(x: np.ndarray, level: float, seed: int) -> np.ndarray:
    """``x`` plus Gaussian noise of standard deviation ``level``, clipped to [0, 1]."""
    rng = np.random.default_rng(seed)
    return np.clip(x + level * rng.standard_normal(x.shape), 0, 1).astype(np.float32)


def build(lr: float) -> portnn.Sequential:
    return portnn.Sequential([
        portnn.Conv2D(1, 16, 3, padding=1), portnn.ReLU(), portnn.MaxPool2D(2),  # 16 x 14 x 14
        portnn.Conv2D(16, 8, 3, padding=1), portnn.ReLU(), portnn.MaxPool2D(2),  # 8 x 7 x 7
        portnn.Conv2DTranspose(8, 16, 2, stride=2), portnn.ReLU(),               # 16 x 14 x 14
        portnn.Conv2DTranspose(16, 1, 2, stride=2), portnn.Sigmoid(),            # 1 x 28 x 28
    ], loss="mse", optimizer=portnn.Adam(lr))


def figure(rows: list[np.ndarray], path: Path) -> None:
    """Rows of digits: noisy, denoised, original."""
    import matplotlib.pyplot as plt

    n = rows[0].shape[0]
    fig, axes = plt.subplots(3, n, figsize=(1.2 * n, 4))
    for r, (title, images) in enumerate(zip(("noisy", "denoised", "original"), rows, strict=True)):
        for c in range(n):
            axes[r, c].imshow(images[c, 0], cmap="gray", vmin=0, vmax=1)
            axes[r, c].axis("off")
        axes[r, 0].set_title(title, loc="left", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = _mnist.parser(__doc__, epochs=5, batch_size=64, lr=2e-3)
    p.add_argument("--noise", type=float, default=0.4, help="standard deviation of the added noise")
    p.add_argument("--max-mse", type=float, default=None,
                   help="exit with status 1 if the test reconstruction MSE is above this")
    p.set_defaults(limit=10000, test_limit=1000)
    args = p.parse_args(argv)
    started = time.perf_counter()
    portnn.seed(args.seed)
    x, _, x_test, _ = _mnist.load(args, flatten=False)
    x_noisy, x_test_noisy = noisy(x, args.noise, 1), noisy(x_test, args.noise, 2)
    model = build(args.lr)
    model.fit(x_noisy, x, epochs=args.epochs, batch_size=args.batch_size, verbose=args.verbose)
    denoised = portnn.to_numpy(model.predict(x_test_noisy, batch_size=500))
    mse, before = float(np.mean((denoised - x_test) ** 2)), float(np.mean((x_test_noisy - x_test) ** 2))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "autoencoder_mnist.npz")
    figure([x_test_noisy[:8], denoised[:8], x_test[:8]], out / "autoencoder_mnist.png")
    print(f"test reconstruction MSE={mse:.4f} (the noisy input's: {before:.4f}) "
          f"({time.perf_counter() - started:.1f} s); figure {out / 'autoencoder_mnist.png'}")
    if args.max_mse is not None and mse > args.max_mse:
        sys.exit(f"test reconstruction MSE {mse:.4f} is above --max-mse {args.max_mse}")


if __name__ == "__main__":
    try:
        main()
    except portnn.BackendError as exc:
        sys.exit(f"portnn: {exc}")

"""A network described as a list of layer dicts, trained on 1000 moons (and, where installed, by PyTorch).

The "neural network in plain NumPy" set-up: 2-25-50-50-25-1 with ReLU and a
sigmoid output, binary cross-entropy, full-batch gradient descent. The same
network with the same initial weights is then trained with ``torch.nn`` and
``torch.optim.SGD`` when PyTorch is installed, and the two cost histories are
compared.

    python examples/architecture.py                            # 10000 full-batch steps
    python examples/architecture.py --epochs 1500 --min-accuracy 0.85
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

import portnn

ARCHITECTURE = [
    {"input_dim": 2, "output_dim": 25, "activation": "relu"},
    {"input_dim": 25, "output_dim": 50, "activation": "relu"},
    {"input_dim": 50, "output_dim": 50, "activation": "relu"},
    {"input_dim": 50, "output_dim": 25, "activation": "relu"},
    {"input_dim": 25, "output_dim": 1, "activation": "sigmoid"},
]


def train(model: portnn.Sequential, x: np.ndarray, y: np.ndarray, epochs: int,
          verbose: int) -> dict[str, list[float]]:
    """Full-batch training; returns the ``cost`` and ``accuracy`` histories."""
    history = model.fit(x, y, epochs=epochs, batch_size=None, verbose=verbose)
    return {"cost": history["loss"], "accuracy": history["accuracy"]}


def train_torch(model: portnn.Sequential, x: np.ndarray, y: np.ndarray, epochs: int,
                lr: float) -> dict[str, list[float]] | None:
    """The same network, from ``model``'s current weights, trained with PyTorch (``None`` without it)."""
    try:
        import torch
    except ImportError:
        return None
    # Matrices of at most 900 x 50: one thread is fastest; more fight over a busy machine's cores.
    torch.set_num_threads(1)
    layers: list[Any] = []
    for spec, dense in zip(ARCHITECTURE, (m for m in model.layers if m.params), strict=True):
        linear = torch.nn.Linear(spec["input_dim"], spec["output_dim"])
        with torch.no_grad():  # portnn's weight is (in, out); torch's is (out, in)
            linear.weight.copy_(torch.from_numpy(portnn.to_numpy(dense.params["weight"]).T.copy()))
            linear.bias.copy_(torch.from_numpy(portnn.to_numpy(dense.params["bias"])))
        layers += [linear, torch.nn.ReLU() if spec["activation"] == "relu" else torch.nn.Sigmoid()]
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    cost, accuracy = [], []
    for _ in range(epochs):
        opt.zero_grad()
        out = net(xt)
        loss = torch.nn.functional.binary_cross_entropy(out, yt)
        loss.backward()
        opt.step()
        cost.append(loss.item())
        accuracy.append(((out > 0.5) == (yt > 0.5)).float().mean().item())
    return {"cost": cost, "accuracy": accuracy, "net": net}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--test-size", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=10000, help="full-batch steps")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=1000, help="print every n-th epoch (0: silent)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument("--out", default="runs", help="folder for the checkpoint (default: runs/)")
    parser.add_argument("--min-accuracy", type=float, default=None,
                        help="exit with status 1 if the test accuracy is below this")
    args = parser.parse_args(argv)

    portnn.seed(args.seed)
    x, y = portnn.data.make_moons(args.samples, noise=0.2, seed=args.seed)
    y = y.astype(np.float32)[:, None]
    x_train, x_test, y_train, y_test = portnn.data.train_test_split(
        x, y, test_size=args.test_size, seed=args.seed)
    model = portnn.from_architecture(ARCHITECTURE, loss=portnn.BinaryCrossEntropy(),
                                     optimizer=portnn.SGD(args.lr))
    print(f"backend: {portnn.get_backend()}; {len(x_train)} training and {len(x_test)} test samples")
    reference = None if args.no_torch else train_torch(model, x_train, y_train, args.epochs, args.lr)
    history = train(model, x_train, y_train, args.epochs, args.verbose)
    test = model.evaluate(x_test, y_test)
    print(f"portnn: cost={history['cost'][-1]:.6f} train accuracy={history['accuracy'][-1]:.4f} "
          f"test accuracy={test['accuracy']:.4f}")
    if reference is not None:
        import torch

        with torch.no_grad():
            out = reference["net"](torch.from_numpy(x_test))
        torch_test = ((out > 0.5) == torch.from_numpy(y_test > 0.5)).float().mean().item()
        gap = np.max(np.abs(np.subtract(history["cost"], reference["cost"])))
        print(f"torch:  cost={reference['cost'][-1]:.6f} train accuracy={reference['accuracy'][-1]:.4f} "
              f"test accuracy={torch_test:.4f}; largest cost difference over the run {gap:.2e}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "architecture.npz")
    print(f"checkpoint: {out / 'architecture.npz'}")
    if args.min_accuracy is not None and test["accuracy"] < args.min_accuracy:
        sys.exit(f"test accuracy {test['accuracy']:.4f} is below --min-accuracy {args.min_accuracy}")


if __name__ == "__main__":
    try:
        main()
    except portnn.BackendError as exc:  # e.g. PORTNN_BACKEND=cupy without CUDA: the reason, no traceback
        sys.exit(f"portnn: {exc}")

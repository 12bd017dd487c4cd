"""What the two MNIST examples share: flags, finding the data, the checkpoint and the accuracy floor."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

import portnn


def default_folder() -> str:
    """The folder ``load_mnist`` reads when ``--data`` is not given, and why."""
    folders = portnn.data.mnist_folders()
    if os.environ.get("PORTNN_DATA_DIR"):
        return f"{folders[0]} ($PORTNN_DATA_DIR)"
    if len(folders) == 2:
        return f"{folders[0]} (the copy shipped with portnn)"
    return f"{folders[0]} (the cache; downloaded there when absent)"


def parser(doc: str, epochs: int, batch_size: int, lr: float) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    p.add_argument("--data", default=None,
                   help=f"folder with the four MNIST IDX files; default here: {default_folder()}. Looked for "
                        "in order: --data, $PORTNN_DATA_DIR, the repository's data/mnist, "
                        "~/.cache/portnn/mnist (downloading there)")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--limit", type=int, default=None, help="train on the first N training images")
    p.add_argument("--test-limit", type=int, default=None, help="test on the first N test images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=1, help="print every n-th epoch (0: silent)")
    p.add_argument("--out", default="runs", help="folder for the checkpoint (default: runs/)")
    p.add_argument("--min-accuracy", type=float, default=None,
                   help="exit with status 1 if the test accuracy is below this")
    return p


def load(args: argparse.Namespace, flatten: bool) -> tuple[np.ndarray, ...]:
    """``x_train, y_train, x_test, y_test``: float32 in [0, 1], int64 labels, cut to the limits."""
    try:
        (x, y), (x_test, y_test) = portnn.data.load_mnist(args.data, normalize=True, flatten=flatten)
    except FileNotFoundError:  # the loader's long message speaks to library users: one line here
        where = " or ".join(str(f) for f in portnn.data.mnist_folders(args.data))
        sys.exit(f"{Path(sys.argv[0]).name}: no MNIST in {where} and no download (offline?); put "
                 f"{', '.join(portnn.data.MNIST_FILES)} (or .gz) in a folder and pass --data FOLDER "
                 "or set PORTNN_DATA_DIR=FOLDER")
    if not flatten:  # NCHW with one channel
        x, x_test = x[:, None], x_test[:, None]
    x, y = x[:args.limit], y[:args.limit].astype(np.int64)
    x_test, y_test = x_test[:args.test_limit], y_test[:args.test_limit].astype(np.int64)
    used = sorted({str(f.parent) for f in portnn.data.locate_mnist(args.data).values() if f})
    print(f"backend: {portnn.get_backend()}; MNIST from {', '.join(used)}: "
          f"{len(x)} training and {len(x_test)} test images")
    return x, y, x_test, y_test


def finish(model: portnn.Sequential, args: argparse.Namespace, name: str,
           x_test: np.ndarray, y_test: np.ndarray, started: float) -> None:
    """Evaluate, save the checkpoint, print the figures and enforce ``--min-accuracy``."""
    result = model.evaluate(x_test, y_test, batch_size=1000)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / f"{name}.npz")
    print(f"test loss={result['loss']:.4f} test accuracy={result['accuracy']:.4f} "
          f"({time.perf_counter() - started:.1f} s); checkpoint {out / f'{name}.npz'}")
    if args.min_accuracy is not None and result["accuracy"] < args.min_accuracy:
        sys.exit(f"test accuracy {result['accuracy']:.4f} is below --min-accuracy {args.min_accuracy}")

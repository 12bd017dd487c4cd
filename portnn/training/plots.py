"""Plots (matplotlib, optional): the training history and a 2-D decision boundary."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..backends import to_numpy

__all__ = ["decision_boundary", "history"]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ImportError("portnn.plot needs matplotlib: pip install matplotlib "
                          "(or pip install \"portnn[examples]\")") from None
    if os.environ.get("MPLBACKEND") is None and not os.environ.get("DISPLAY"):
        matplotlib.use("Agg")  # no display: draw to files
    import matplotlib.pyplot as plt

    return plt


def history(h: dict[str, list[float]], path: str | os.PathLike[str] | None = None) -> Any:
    """One panel per quantity (loss, then each metric), training against validation.

    Saves to ``path`` when given (the figure is then closed); returns the figure.
    """
    plt = _pyplot()
    names = [k for k in h if not k.startswith("val_")]
    names += [k[4:] for k in h if k.startswith("val_") and k[4:] not in names]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=True):
        for key, label in ((name, "training"), (f"val_{name}", "validation")):
            if key in h:
                ax.plot(range(1, len(h[key]) + 1), h[key], label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=80)
        plt.close(fig)
    return fig


def decision_boundary(model: Any, x: Any, y: Any, path: str | os.PathLike[str] | None = None,
                      ax: Any = None, resolution: int = 200, title: str | None = None) -> Any:
    """The classes ``model`` predicts over the plane of 2-D inputs ``x``, with the samples on top.

    A one-column output is thresholded (0 for a ``from_logits`` loss, else
    0.5); wider outputs take the arg-max. Draws into ``ax`` if given, else a
    new figure; saves to ``path`` when given. Returns the axes.

    Example:
        >>> portnn.plot.decision_boundary(model, x, y, "runs/moons.png")
    """
    plt = _pyplot()
    x, y = to_numpy(x), to_numpy(y)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"decision_boundary: x must have shape (N, 2), got {x.shape}")
    xx, yy = np.meshgrid(np.linspace(x[:, 0].min() - 0.5, x[:, 0].max() + 0.5, resolution),
                         np.linspace(x[:, 1].min() - 0.5, x[:, 1].max() + 0.5, resolution))
    grid = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)
    out = to_numpy(model.predict(grid))
    if out.ndim == 2 and out.shape[1] > 1:
        zz = out.argmax(axis=1)
    else:
        zz = (out.reshape(-1) > (0.0 if getattr(model.loss, "from_logits", False) else 0.5))
    labels = y.argmax(axis=1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(-1)
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.contourf(xx, yy, zz.reshape(xx.shape).astype(float), cmap="Spectral", alpha=0.8)
    ax.scatter(x[:, 0], x[:, 1], c=labels, cmap="Spectral", s=12, edgecolors="k", linewidths=0.3)
    if title:
        ax.set_title(title)
    if path is not None:
        ax.figure.tight_layout()
        ax.figure.savefig(path, dpi=80)
        if own:
            plt.close(ax.figure)
    return ax

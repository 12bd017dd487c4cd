"""What ``fit`` shows while it trains: the classic epoch line, or a tqdm bar on a terminal.

The bar reads the running loss back from the device at most every
``interval`` seconds (a time throttle, never every step); the epoch line is
printed from the floats the epoch already read back.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Progress", "format_epoch"]


def format_epoch(epoch: int, epochs: int, logs: dict[str, float]) -> str:
    """The classic per-epoch line: ``epoch 3/1000 error=0.307195 accuracy=0.7500``."""
    parts = [f"epoch {epoch}/{epochs}"]
    for key, value in logs.items():
        name = key.replace("loss", "error")
        parts.append(f"{name}={value:.6f}" if "error" in name else f"{name}={value:.4f}")
    return " ".join(parts)


def _tqdm() -> Any | None:
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional: plain lines without it
        return None
    return tqdm


class Progress:
    """Per-epoch display for ``fit(verbose=...)``.

    ``verbose=0`` is silent; ``verbose=n`` prints the epoch line every n-th
    epoch (and the first and last). With ``verbose=1``, stderr a terminal and
    tqdm installed, each epoch also shows a bar over its batches with the last
    known running loss, read back at most every ``interval`` seconds.
    """

    def __init__(self, verbose: int, epochs: int, steps: int, interval: float = 0.25,
                 clock: Callable[[], float] = time.monotonic, bar: bool | None = None) -> None:
        self.verbose, self.epochs, self.steps = int(verbose), epochs, steps
        self.interval, self.clock = interval, clock
        tqdm = _tqdm() if self.verbose == 1 else None
        if bar is None:
            bar = tqdm is not None and sys.stderr.isatty()
        self._tqdm = tqdm if bar else None
        self._bar: Any = None
        self._last = 0.0
        self.reads = 0  # loss read-backs made for the bar (tests count them)

    @property
    def has_bar(self) -> bool:
        """Whether a bar is showing (the loop skips :meth:`step` otherwise)."""
        return self._bar is not None

    def epoch_begin(self, epoch: int) -> None:
        if self._tqdm is not None:
            self._bar = self._tqdm(total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}",
                                   leave=False, file=sys.stderr, unit="batch")
            self._last = self.clock()

    def step(self, total: Any, count: float) -> None:
        """After each batch: advance the bar; if ``interval`` has passed, show the running mean
        loss ``total / count`` (``total`` a 0-d device array: the only read-back)."""
        if self._bar is None:
            return
        self._bar.update(1)
        now = self.clock()
        if now - self._last >= self.interval:
            self._last = now
            self.reads += 1
            self._bar.set_postfix_str(f"error={float(total) / count:.4f}", refresh=False)

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        v = self.verbose
        if v and ((epoch + 1) % v == 0 or epoch == 0 or epoch + 1 == self.epochs):
            print(format_epoch(epoch + 1, self.epochs, logs), flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

"""A model's input as the loop sees it: one array, or a list of arrays for several inputs.

Every helper maps over the list, so the loop, the runners and the data-parallel
strategy never branch on how many inputs a model has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["count", "each", "rows"]


def each(x: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn`` applied to the input array, or to each of a list of them."""
    return [fn(a) for a in x] if isinstance(x, list) else fn(x)


def count(x: Any) -> int:
    """The number of samples."""
    return int((x[0] if isinstance(x, list) else x).shape[0])


def rows(x: Any, start: int, stop: int) -> Any:
    """Samples ``[start, stop)``."""
    return [a[start:stop, ...] for a in x] if isinstance(x, list) else x[start:stop, ...]

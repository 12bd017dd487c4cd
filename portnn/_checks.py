"""Argument checks for constructors and ``fit``: one line each, a message naming the culprit.

Every helper takes the owner (``"Dense"``, ``"Adam"``, ``"Sequential.fit"``), the
argument's name and its value, and returns the value normalised (a Python ``int``
or ``float``) or raises ``TypeError`` (wrong type) / ``ValueError`` (wrong value)
saying what was given and what to pass instead.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

FLOAT_DTYPES = ("float16", "float32", "float64")


def _got(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def integer(owner: str, name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``; floats (even ``2.0``) and bools are a ``TypeError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an int >= {minimum}, got {_got(value)}")
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be an int >= {minimum}, got {value}")
    return int(value)


def real(owner: str, name: str, value: Any) -> float:
    """``value`` as a finite Python float (bools are a ``TypeError``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a number, got {_got(value)}")
    if not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be finite, got {value}")
    return float(value)


def positive(owner: str, name: str, value: Any) -> float:
    """A finite float > 0 (learning rates, ``eps``)."""
    if real(owner, name, value) <= 0:
        raise ValueError(f"{owner}: {name} must be > 0, got {value}")
    return float(value)


def nonnegative(owner: str, name: str, value: Any) -> float:
    """A finite float >= 0 (``weight_decay``, ``min_lr``)."""
    if real(owner, name, value) < 0:
        raise ValueError(f"{owner}: {name} must be >= 0, got {value}")
    return float(value)


def fraction(owner: str, name: str, value: Any, closed: bool = False) -> float:
    """A float in ``[0, 1)`` (``[0, 1]`` with ``closed``): momentum, betas, dropout rates."""
    v = real(owner, name, value)
    if not (0.0 <= v <= 1.0 if closed else 0.0 <= v < 1.0):
        interval = "[0, 1]" if closed else "[0, 1)"
        raise ValueError(f"{owner}: {name} must lie in {interval}, got {value}")
    return v


def boolean(owner: str, name: str, value: Any) -> bool:
    """``True`` or ``False`` (NumPy bools too), nothing truthy."""
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        raise TypeError(f"{owner}: {name} must be True or False, got {_got(value)}")
    return bool(value)


def choice(owner: str, name: str, value: Any, valid: Iterable[str]) -> str:
    """One of the strings ``valid``."""
    valid = tuple(valid)
    if not isinstance(value, str):
        raise TypeError(f"{owner}: {name} must be one of {list(valid)}, got {_got(value)}")
    if value not in valid:
        raise ValueError(f"{owner}: unknown {name} {value!r}; valid: {list(valid)}")
    return value


def float_dtype(owner: str, value: Any) -> str:
    """A float dtype name: ``"float32"`` (the default), ``"float64"`` or ``"float16"``."""
    return choice(owner, "dtype", str(value) if type(value).__name__ == "dtype" else value,
                  FLOAT_DTYPES)

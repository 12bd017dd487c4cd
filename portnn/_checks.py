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
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value}")
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
        raise ValueError(f"{owner}: {name} must satisfy 0 <= {name} {'<=' if closed else '<'} 1, "
                         f"got {value}")
    return v


def betas(owner: str, value: Any) -> tuple[float, float]:
    """Adam's ``(beta1, beta2)``: two floats in ``[0, 1)``."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TypeError(f"{owner}: betas must be a pair (beta1, beta2) in [0, 1), got {value!r}")
    return (fraction(owner, "betas[0]", value[0]), fraction(owner, "betas[1]", value[1]))


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


_ARCHITECTURE_KEYS = ("input_dim", "output_dim", "activation", "init")


def architecture(entries: Any) -> list[dict[str, Any]]:
    """``from_architecture``'s entries: dicts with int ``input_dim``/``output_dim`` that chain."""
    if isinstance(entries, dict | str) or not isinstance(entries, Iterable):
        raise TypeError(f"from_architecture: architecture must be a list of dicts, got {_got(entries)}")
    entries = list(entries)
    if not entries:
        raise ValueError("from_architecture: architecture is empty; give at least one layer dict")
    for i, spec in enumerate(entries):
        where = f"from_architecture: architecture[{i}]"
        if not isinstance(spec, dict):
            raise TypeError(f"{where} must be a dict like {{'input_dim': 2, 'output_dim': 4, "
                            f"'activation': 'relu'}}, got {_got(spec)}")
        unknown = sorted(set(spec) - set(_ARCHITECTURE_KEYS))
        missing = [k for k in ("input_dim", "output_dim") if k not in spec]
        if unknown or missing:
            raise ValueError(f"{where}: {'unknown keys ' + str(unknown) if unknown else ''}"
                             f"{'; ' if unknown and missing else ''}"
                             f"{'missing ' + str(missing) if missing else ''}; valid keys: "
                             f"{list(_ARCHITECTURE_KEYS)}")
        integer(where, "input_dim", spec["input_dim"])
        integer(where, "output_dim", spec["output_dim"])
        act = spec.get("activation")
        if act is not None and not isinstance(act, str):
            raise TypeError(f"{where}: activation must be a name such as 'relu' or None, got {_got(act)}")
        if i and spec["input_dim"] != entries[i - 1]["output_dim"]:
            raise ValueError(f"{where}: input_dim {spec['input_dim']} does not match the previous "
                             f"layer's output_dim {entries[i - 1]['output_dim']}")
    return entries

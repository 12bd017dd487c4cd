"""Callbacks for ``fit``: they live in :mod:`portnn.training.callbacks`."""

from .training.callbacks import *  # noqa: F403
from .training.callbacks import __all__  # noqa: F401

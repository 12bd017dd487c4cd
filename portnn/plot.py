"""Plots of training: they live in :mod:`portnn.training.plots`."""

from .training.plots import *  # noqa: F403
from .training.plots import __all__  # noqa: F401

"""Gradient clipping: re-exported from :mod:`portnn.optim.clipping`, where it lives."""

from .optim.clipping import EPS, check, clip_gradients, weight_decay

__all__ = ["EPS", "check", "clip_gradients", "weight_decay"]

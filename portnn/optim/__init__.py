"""Optimization: the optimizers, learning-rate schedules and gradient transforms (clipping, weight decay).

``portnn.optimizers`` and ``portnn.clipping`` re-export these; the optimizers see
parameters and gradients only, never layers.
"""

from . import clipping, optimizers, schedules
from .optimizers import SGD, Adam, AdamW, Optimizer, RMSProp, Schedule, get
from .schedules import CosineDecay, ExponentialDecay, LRSchedule, StepDecay

__all__ = ["SGD", "Adam", "AdamW", "CosineDecay", "ExponentialDecay", "LRSchedule", "Optimizer",
           "RMSProp", "Schedule", "StepDecay", "clipping", "get", "optimizers", "schedules"]

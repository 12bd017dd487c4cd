"""Optimizers and learning-rate schedules: re-exported from :mod:`portnn.optim`, where they live."""

from .optim import (
    SGD,
    Adam,
    AdamW,
    CosineDecay,
    ExponentialDecay,
    LRSchedule,
    Optimizer,
    RMSProp,
    Schedule,
    StepDecay,
    get,
)

__all__ = ["SGD", "Adam", "AdamW", "CosineDecay", "ExponentialDecay", "LRSchedule", "Optimizer",
           "RMSProp", "Schedule", "StepDecay", "get"]

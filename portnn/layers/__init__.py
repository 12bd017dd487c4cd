"""Layers: each is its parameters plus an explicit forward and backward."""

from ._base import Layer
from .activations import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .dense import Dense

__all__ = ["Dense", "Layer", "LeakyReLU", "ReLU", "Sigmoid", "Softmax", "Tanh"]

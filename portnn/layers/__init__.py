"""Layers: each is its parameters plus an explicit forward and backward."""

from ._base import Layer
from .activations import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .conv import Conv2D
from .dense import Dense
from .dropout import Dropout
from .normalization import BatchNorm
from .pooling import AvgPool2D, MaxPool2D
from .shape import Flatten, Reshape

__all__ = ["AvgPool2D", "BatchNorm", "Conv2D", "Dense", "Dropout", "Flatten", "Layer", "LeakyReLU",
           "MaxPool2D", "ReLU", "Reshape", "Sigmoid", "Softmax", "Tanh"]

"""Layers: each is its parameters plus an explicit forward and backward."""

from ._base import Layer
from .activations import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .conv import Conv2D, Conv2DTranspose
from .dense import Dense
from .dropout import Dropout
from .embedding import Embedding
from .normalization import BatchNorm, LayerNorm
from .pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D, UpSampling2D
from .recurrent import GRU, LSTM, SimpleRNN
from .residual import Residual
from .shape import Flatten, Reshape

__all__ = ["GRU", "LSTM", "AvgPool2D", "BatchNorm", "Conv2D", "Conv2DTranspose", "Dense", "Dropout",
           "Embedding", "Flatten", "GlobalAvgPool2D", "Layer", "LayerNorm", "LeakyReLU", "MaxPool2D", "ReLU",
           "Reshape", "Residual", "Sigmoid", "SimpleRNN", "Softmax", "Tanh", "UpSampling2D"]

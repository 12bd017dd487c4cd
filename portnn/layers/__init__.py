"""Layers: each is its parameters plus an explicit forward and backward."""

from ._base import Layer
from .activations import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .conv import Conv2D, Conv2DTranspose
from .dense import Dense
from .dropout import Dropout
from .embedding import Embedding
from .merge import Add, Concatenate, Multiply
from .normalization import BatchNorm, LayerNorm
from .pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D, UpSampling2D
from .recurrent import GRU, LSTM, SimpleRNN
from .residual import Residual
from .shape import Flatten, Reshape
from .symbolic import Input, SymbolicTensor

__all__ = ["GRU", "LSTM", "Add", "AvgPool2D", "BatchNorm", "Concatenate", "Conv2D", "Conv2DTranspose",
           "Dense", "Dropout", "Embedding", "Flatten", "GlobalAvgPool2D", "Input", "Layer", "LayerNorm",
           "LeakyReLU", "MaxPool2D", "Multiply", "ReLU", "Reshape", "Residual", "Sigmoid", "SimpleRNN",
           "Softmax", "SymbolicTensor", "Tanh", "UpSampling2D"]

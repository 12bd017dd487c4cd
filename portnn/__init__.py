"""portnn: neural networks written once against the Python Array API standard.

The same layers train on NumPy, CuPy, PyTorch or array-api-strict; pick one
with ``PORTNN_BACKEND``, :func:`set_backend` or :func:`use_backend`.
"""

from . import (
    backends,
    callbacks,
    data,
    distributed,
    initializers,
    layers,
    losses,
    metrics,
    optimizers,
    plot,
    training,
)
from .backends import (
    Backend,
    BackendError,
    DeviceMismatchError,
    available_backends,
    get_backend,
    seed,
    set_backend,
    to_numpy,
    use_backend,
)
from .gradcheck import GradcheckError, gradcheck, gradcheck_loss
from .layers import (
    GRU,
    LSTM,
    Add,
    AvgPool2D,
    BatchNorm,
    Concatenate,
    Conv2D,
    Conv2DTranspose,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalAvgPool2D,
    Input,
    Layer,
    LayerNorm,
    LeakyReLU,
    MaxPool2D,
    Multiply,
    ReLU,
    Reshape,
    Residual,
    Sigmoid,
    SimpleRNN,
    Softmax,
    Tanh,
    UpSampling2D,
)
from .losses import MSE, BinaryCrossEntropy, CrossEntropy, Loss
from .models import Model
from .network import CheckpointError, History, Sequential, from_architecture
from .optimizers import SGD, Adam, AdamW, CosineDecay, ExponentialDecay, Optimizer, RMSProp, StepDecay
from .training.inputs import NonFiniteLossError

__version__ = "0.1.0"

__all__ = [
    "AvgPool2D", "BatchNorm", "Conv2D", "Dropout", "Embedding", "Flatten", "GlobalAvgPool2D", "LayerNorm",
    "MaxPool2D", "Reshape", "UpSampling2D", "SimpleRNN", "LSTM", "GRU", "Conv2DTranspose", "Residual",
    "Add", "Concatenate", "Input", "Model", "Multiply",
    "MSE", "SGD", "Adam", "AdamW", "Backend", "BackendError", "BinaryCrossEntropy",
    "CheckpointError", "CosineDecay", "CrossEntropy", "Dense", "DeviceMismatchError",
    "ExponentialDecay", "GradcheckError", "History", "Layer", "LeakyReLU", "Loss", "NonFiniteLossError",
    "Optimizer", "RMSProp", "ReLU", "Sequential", "Sigmoid", "Softmax", "StepDecay", "Tanh",
    "available_backends", "backends", "callbacks", "data", "distributed", "from_architecture", "get_backend",
    "gradcheck", "gradcheck_loss", "initializers", "layers", "losses", "metrics", "optimizers", "plot",
    "seed", "set_backend", "to_numpy", "training", "use_backend",
]

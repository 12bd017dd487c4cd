"""Models: the base every trainable network shares, :class:`Sequential` and the graph :class:`Model`."""

from .base import BaseModel
from .graph import Model
from .sequential import Sequential, from_architecture

__all__ = ["BaseModel", "Model", "Sequential", "from_architecture"]

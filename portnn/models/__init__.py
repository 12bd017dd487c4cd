"""Models: the base every trainable network shares, and :class:`Sequential`."""

from .base import BaseModel
from .sequential import Sequential, from_architecture

__all__ = ["BaseModel", "Sequential", "from_architecture"]

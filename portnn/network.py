"""The old home of :class:`Sequential`: see :mod:`portnn.models`."""

from ._checkpoint import CheckpointError
from .models import Sequential, from_architecture
from .models.base import BaseModel
from .progress import format_epoch
from .training import History

__all__ = ["BaseModel", "CheckpointError", "History", "Sequential", "format_epoch", "from_architecture"]

"""The old home of :class:`Sequential`: see :mod:`portnn.models`."""

from .models import Sequential, from_architecture
from .models.base import BaseModel
from .training import History
from .training.checkpoints import CheckpointError
from .training.progress import format_epoch

__all__ = ["BaseModel", "CheckpointError", "History", "Sequential", "format_epoch", "from_architecture"]

"""Callbacks for ``fit``: they live in :mod:`portnn.training.callbacks` and, for
:class:`BackupAndRestore`, :mod:`portnn.training.backup`."""

from .training.backup import BackupAndRestore
from .training.callbacks import *  # noqa: F403
from .training.callbacks import __all__ as _all

__all__ = ["BackupAndRestore", *_all]

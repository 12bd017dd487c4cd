"""Training: the loop, one step, the data boundary, callbacks, progress, checkpoints and plots.

``fit`` (:mod:`.loop`) gathers the batches and runs :func:`train_step`
(:mod:`.step`) on each through a strategy (single-process or data-parallel);
:mod:`.inputs` checks what users hand in; :mod:`.callbacks`, :mod:`.progress`
and :mod:`.plots` hang off the loop; :mod:`.checkpoints` saves and loads models.
"""

from .loop import History, evaluate, fit, sample_weights
from .step import LOCAL, Local, train_step

__all__ = ["LOCAL", "History", "Local", "evaluate", "fit", "sample_weights", "train_step"]

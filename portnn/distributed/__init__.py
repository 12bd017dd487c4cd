"""Data-parallel training across processes, GPUs and machines.

Start N copies of a script with ``mpiexec -n N python -m mpi4py train.py`` or
``torchrun --nproc-per-node=N train.py``; :func:`init` picks the communicator
from the launcher's environment (a size-1 one when started alone), and
``model.fit(x, y, batch_size=B, distributed=True)`` then trains every rank on
its slice of each global batch of ``B`` samples and sums the gradients between
backward and the optimizer step, so N ranks reach the weights of one process
with batch ``B``.

:mod:`.launch` finds the launcher and the communicator, :mod:`.data_parallel`
is the strategy the training loop runs (:class:`DataParallel`; one process runs
:data:`LOCAL`), :mod:`.dask` predicts over Dask arrays. Communicators live in
``portnn/backends/_communicators.py``, as moving bytes is library-specific.
"""

from ..backends._communicators import Communicator, MPICommunicator, TorchCommunicator
from ..training.step import LOCAL, Local
from .dask import predict_dask
from .data_parallel import (
    DataParallel,
    evaluate,
    predict,
    prepare,
    reduce_gradients,
    reduce_logs,
    shard,
)
from .launch import init, launcher, rank_device, resolve

__all__ = ["LOCAL", "Communicator", "DataParallel", "Local", "MPICommunicator", "TorchCommunicator",
           "evaluate", "init", "launcher", "predict", "predict_dask", "prepare", "rank_device",
           "reduce_gradients", "reduce_logs", "resolve", "shard"]

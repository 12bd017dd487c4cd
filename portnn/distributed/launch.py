"""Which launcher started this process, and the job's communicator (:func:`init`)."""

from __future__ import annotations

import os
import sys
from typing import Any

from ..backends._communicators import Communicator, MPICommunicator, TorchCommunicator

__all__ = ["init", "launcher", "rank_device", "resolve"]

# Set by mpiexec/srun through PMI/PMIx (MPICH, Intel MPI, MVAPICH, Slurm) or by Open MPI.
_MPI_VARIABLES = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_KINDS = {"single": Communicator, "mpi": MPICommunicator, "torch": TorchCommunicator}
_comm: Communicator | None = None


def launcher(environ: dict[str, str] | None = None) -> str:
    """Which launcher started this process: ``"torch"`` (torchrun), ``"mpi"`` or ``"single"``."""
    env = os.environ if environ is None else environ
    if "TORCHELASTIC_RUN_ID" in env or {"RANK", "WORLD_SIZE", "MASTER_ADDR"} <= set(env):
        return "torch"
    if any(name in env for name in _MPI_VARIABLES) or "mpi4py.MPI" in sys.modules:
        return "mpi"
    return "single"


def init(kind: str | None = None) -> Communicator:
    """The communicator of this job, created on the first call and returned again after.

    Args:
        kind: ``"mpi"``, ``"torch"`` or ``"single"``; default: from the launcher's
            environment (mpiexec -> mpi4py, torchrun -> ``torch.distributed``, none -> size 1).

    With ``PORTNN_BACKEND=cupy`` (or ``PORTNN_DEVICE=cuda``) and no device
    index, each rank computes on ``cuda:<local_rank>``. Under MPI an uncaught
    exception on any rank aborts the whole job instead of leaving the others waiting.

    Example:
        >>> comm = portnn.distributed.init()
        >>> print(comm.rank, comm.size)
    """
    global _comm
    if _comm is not None:
        if kind is not None and kind != _comm.kind:
            raise RuntimeError(f"portnn.distributed.init({kind!r}): this process already runs a "
                               f"{_comm.kind!r} communicator; init() returns it")
        return _comm
    kind = kind or launcher()
    if kind not in _KINDS:
        raise ValueError(f"portnn.distributed.init: unknown kind {kind!r}; valid: {sorted(_KINDS)}")
    try:
        comm = _KINDS[kind]()
    except ImportError as exc:
        package = {"mpi": '"portnn[mpi]" mpich (mpi4py plus an MPI)', "torch": "torch"}[kind]
        raise RuntimeError(f"portnn.distributed.init: a {kind!r} communicator needs {exc.name}: "
                           f"pip install {package}") from exc
    if comm.size > 1 and isinstance(comm, MPICommunicator):
        _abort_on_exception(comm)
    device = rank_device(comm, os.environ)
    if device is not None:
        os.environ["PORTNN_DEVICE"] = device
    _comm = comm
    return comm


def rank_device(comm: Communicator, environ: dict[str, str]) -> str | None:
    """``cuda:<local_rank>`` where the environment asks for a GPU without saying which, else ``None``."""
    device, backend = environ.get("PORTNN_DEVICE"), environ.get("PORTNN_BACKEND")
    if comm.size > 1 and (device == "cuda" or (not device and backend == "cupy")):
        return f"cuda:{comm.local_rank}"
    return None


def _abort_on_exception(comm: MPICommunicator) -> None:
    """What ``python -m mpi4py`` does: a rank that dies takes the job with it."""
    previous = sys.excepthook

    def hook(*exc_info: Any) -> None:
        previous(*exc_info)
        sys.stderr.flush()
        comm.abort(1)

    sys.excepthook = hook


def resolve(distributed: bool | Communicator | None) -> Communicator | None:
    """``True`` -> :func:`init`, a communicator as is, ``None``/``False`` -> ``None``."""
    if distributed is None or distributed is False:
        return None
    if distributed is True:
        return init()
    if not isinstance(distributed, Communicator):
        raise TypeError(f"distributed must be True, False, None or a portnn.distributed.Communicator, "
                        f"got {type(distributed).__name__}")
    return distributed

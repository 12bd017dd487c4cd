"""Communicators: a group of processes that sum, broadcast and gather arrays.

:class:`Communicator` is the size-1 group (a script runs alone unchanged);
:class:`MPICommunicator` runs on mpi4py, :class:`TorchCommunicator` on
``torch.distributed``. How an array travels depends on its library: NumPy by
buffer, torch tensors by ``torch.distributed`` (gloo on CPU, NCCL on CUDA),
CuPy arrays by NCCL (``cupy.cuda.nccl``, its id sent over MPI), anything else
through a host copy. Like ``portnn.backends``, this module names libraries
because moving bytes between processes is library-specific.
"""

from __future__ import annotations

import atexit
import os
import socket
from typing import Any

import array_api_compat
import numpy as np

from . import backend_of
from ._errors import BackendError

__all__ = ["Communicator", "MPICommunicator", "TorchCommunicator"]


class Communicator:
    """The size-1 group: every collective returns its input. Subclasses talk to other processes.

    ``allreduce`` sums over ranks, ``broadcast`` copies rank ``root``'s array
    to all, ``allgather`` concatenates every rank's array along axis 0 in rank
    order (all ranks pass the same shape). Arrays come back on the backend they
    were given on.

    Example:
        >>> comm = portnn.distributed.init()
        >>> total = comm.allreduce(x)          # x itself when running alone
    """

    kind = "single"

    def __init__(self) -> None:
        self.rank, self.size, self.local_rank = 0, 1, 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints and writes files."""
        return self.rank == 0

    def allreduce(self, x: Any) -> Any:
        return x

    def broadcast(self, x: Any, root: int = 0) -> Any:
        return x

    def allgather(self, x: Any) -> Any:
        return x

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        """A picklable Python object from rank ``root``."""
        return obj

    def barrier(self) -> None:
        """Wait until every rank gets here."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size}, local_rank={self.local_rank})"


def _through_host(x: Any, collective: Any, shape: tuple[int, ...] | None = None) -> Any:
    """Run a NumPy collective on an array of any backend, copying through the host.

    Inside a compiled step (a traced ``x``) the copy and the collective are a host callback of
    the program; ``shape`` is the result's where it differs from ``x``'s (allgather).
    """
    if isinstance(x, np.ndarray):
        return collective(np.ascontiguousarray(x))
    be = backend_of(x)
    if be.library.is_traced(x):
        return be.library.host_callback(lambda a: collective(np.ascontiguousarray(a)), x,
                                        tuple(x.shape) if shape is None else shape)
    host = np.ascontiguousarray(be.to_numpy(x))
    return be.asarray(collective(host), dtype=str(host.dtype))


class MPICommunicator(Communicator):
    """MPI through mpi4py (``mpiexec -n 4 python -m mpi4py train.py``).

    NumPy arrays travel by buffer, CuPy arrays by NCCL (bootstrapped over MPI,
    one GPU per rank: ``cuda:local_rank``), others through a host copy.
    """

    kind = "mpi"

    def __init__(self, comm: Any = None) -> None:
        from mpi4py import MPI

        self._mpi = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_rank = node.Get_rank()
        node.Free()
        self._nccl: _CupyNccl | None = None

    def _route(self, x: Any, host: Any, name: str, *args: Any) -> Any:
        if array_api_compat.is_cupy_array(x):
            if self._nccl is None:
                self._nccl = _CupyNccl(self, x)
            return getattr(self._nccl, name)(x, *args)
        shape = (self.size * x.shape[0], *x.shape[1:]) if name == "allgather" else None
        return _through_host(x, host, shape)

    def allreduce(self, x: Any) -> Any:
        def host(a: np.ndarray) -> np.ndarray:
            out = np.empty_like(a)
            self.comm.Allreduce(a, out, op=self._mpi.SUM)
            return out

        return self._route(x, host, "allreduce")

    def broadcast(self, x: Any, root: int = 0) -> Any:
        def host(a: np.ndarray) -> np.ndarray:
            a = a.copy()
            self.comm.Bcast(a, root=root)
            return a

        return self._route(x, host, "broadcast", root)

    def allgather(self, x: Any) -> Any:
        def host(a: np.ndarray) -> np.ndarray:
            out = np.empty((self.size, *a.shape), a.dtype)
            self.comm.Allgather(a, out)
            return out.reshape((self.size * a.shape[0], *a.shape[1:]))

        return self._route(x, host, "allgather")

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        return self.comm.bcast(obj, root=root)

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now (a failing rank must not leave the others waiting)."""
        self.comm.Abort(code)


class _CupyNccl:
    """NCCL collectives on CuPy arrays; the NCCL id travels over MPI.

    Written against ``cupy.cuda.nccl``; not yet run on a GPU (no GPU in this project's CI).
    """

    def __init__(self, mpi: MPICommunicator, first: Any) -> None:
        import cupy
        from cupy.cuda import nccl

        if not getattr(nccl, "available", False):  # CuPy without libnccl has no NCCL functions
            raise BackendError(
                "MPI data parallelism on CuPy arrays needs NCCL, which this CuPy cannot load: "
                "pip install nvidia-nccl-cu12 (nvidia-nccl-cu13 for cupy-cuda13x), or train the "
                "ranks on the CPU (PORTNN_BACKEND=numpy) or with torch (PORTNN_BACKEND=torch)")
        self._cupy, self._nccl, self.size = cupy, nccl, mpi.size
        uid = mpi.broadcast_object(nccl.get_unique_id() if mpi.rank == 0 else None)
        with first.device:  # the communicator is bound to the current device
            self.comm = nccl.NcclCommunicator(mpi.size, uid, mpi.rank)

    def _dtype(self, dtype: Any) -> int:
        name = str(self._cupy.dtype(dtype))
        codes = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64",
                 "int32": "NCCL_INT32", "int64": "NCCL_INT64"}
        if name not in codes:
            raise TypeError(f"NCCL collectives take {sorted(codes)}, got {name}")
        return getattr(self._nccl, codes[name])

    def allreduce(self, x: Any) -> Any:
        cp = self._cupy
        with x.device:
            x = cp.ascontiguousarray(x)
            out = cp.empty_like(x)
            self.comm.allReduce(x.data.ptr, out.data.ptr, x.size, self._dtype(x.dtype),
                                self._nccl.NCCL_SUM, cp.cuda.get_current_stream().ptr)
        return out

    def broadcast(self, x: Any, root: int = 0) -> Any:
        cp = self._cupy
        with x.device:
            buf = cp.array(x, copy=True, order="C")
            self.comm.bcast(buf.data.ptr, buf.size, self._dtype(buf.dtype), root,
                            cp.cuda.get_current_stream().ptr)
        return buf

    def allgather(self, x: Any) -> Any:
        cp = self._cupy
        with x.device:
            x = cp.ascontiguousarray(x)
            out = cp.empty((self.size, *x.shape), x.dtype)
            self.comm.allGather(x.data.ptr, out.data.ptr, x.size, self._dtype(x.dtype),
                                cp.cuda.get_current_stream().ptr)
        return out.reshape((self.size * x.shape[0], *x.shape[1:]))


class TorchCommunicator(Communicator):
    """``torch.distributed`` (``torchrun --nproc-per-node=4 train.py``): gloo on CPU, NCCL on CUDA.

    Torch tensors travel as they are; NumPy arrays as CPU tensors sharing
    their memory; others through a host copy. Unless a process group exists,
    it initialises a gloo one from torchrun's environment, and CUDA tensors
    get an NCCL group on their first collective, bound to their GPU (one GPU
    per rank, else a clear error): a CPU model never touches CUDA.
    """

    kind = "torch"

    def __init__(self) -> None:
        import torch
        import torch.distributed as dist

        self._torch, self._dist = torch, dist
        # CUDA tensors: None while the default group takes them (one the caller set up), else
        # an NCCL group made on the first one (_cuda_group).
        self._cuda: Any = None
        if not dist.is_initialized():
            # gloo, whatever the machine has: a CPU model needs no GPU, and one GPU must not stop
            # two CPU ranks (binding rank 1 to cuda:1 there fails with "invalid device ordinal").
            dist.init_process_group(backend="gloo")
            self._cuda = False
            # A group left to the interpreter's exit can abort in gloo's thread teardown.
            atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank))

    def _group(self, t: Any) -> Any:
        """The process group for tensor ``t``: ``None`` (the default one) unless it is a CUDA tensor."""
        if t.device.type != "cuda" or self._cuda is None:
            return None
        if self._cuda is False:
            self._cuda = self._cuda_group(t.device)
        return self._cuda

    def _cuda_group(self, device: Any) -> Any:
        """An NCCL group over this rank's GPU, made once every rank holds a CUDA tensor."""
        places: list[Any] = [None] * self.size
        self._dist.all_gather_object(places, (socket.gethostname(), device.index))
        clash = gpu_clash(places)
        if clash is not None:  # every rank sees the same places: all raise, none waits
            raise RuntimeError(f"{clash}: NCCL needs one GPU per rank; start at most "
                               f"{self._torch.cuda.device_count()} ranks on that machine, or train "
                               f"these ranks on the CPU (PORTNN_DEVICE=cpu)")
        if not self._dist.is_nccl_available():
            raise RuntimeError("torch.distributed: this torch build has no NCCL for CUDA tensors; "
                               "train on the CPU (PORTNN_DEVICE=cpu) or install a CUDA build of torch")
        self._torch.cuda.set_device(device)
        return self._dist.new_group(backend="nccl")

    def _apply(self, x: Any, collective: Any) -> Any:
        torch = self._torch
        if isinstance(x, torch.Tensor):
            return collective(x.detach().contiguous())
        if isinstance(x, np.ndarray):
            return collective(torch.from_numpy(np.ascontiguousarray(x))).numpy()
        return _through_host(x, lambda a: collective(torch.from_numpy(a)).numpy())

    def allreduce(self, x: Any) -> Any:
        def reduce(t: Any) -> Any:
            t = t.clone()
            self._dist.all_reduce(t, group=self._group(t))
            return t

        return self._apply(x, reduce)

    def broadcast(self, x: Any, root: int = 0) -> Any:
        def bcast(t: Any) -> Any:
            t = t.clone()
            self._dist.broadcast(t, src=root, group=self._group(t))
            return t

        return self._apply(x, bcast)

    def allgather(self, x: Any) -> Any:
        def gather(t: Any) -> Any:
            parts = [self._torch.empty_like(t) for _ in range(self.size)]
            self._dist.all_gather(parts, t, group=self._group(t))
            return self._torch.cat(parts, dim=0)

        return self._apply(x, gather)

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        box = [obj]
        self._dist.broadcast_object_list(box, src=root)
        return box[0]

    def barrier(self) -> None:
        self._dist.barrier()


def gpu_clash(places: list[tuple[str, int]]) -> str | None:
    """The first two ranks computing on one GPU of one machine, from each rank's ``(host, index)``."""
    seen: dict[tuple[str, int], int] = {}
    for rank, place in enumerate(places):
        if place in seen:
            return f"ranks {seen[place]} and {rank} both compute on cuda:{place[1]} of {place[0]}"
        seen[place] = rank
    return None

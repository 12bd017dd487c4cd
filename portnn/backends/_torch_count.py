"""Count what a piece of torch code launches: kernels, host syncs, host-to-device copies.

On a GPU each array operation is about one kernel launch, so the number of
operations per training step is portnn's GPU speed. A ``TorchDispatchMode``
sees every aten call below the Python layer; this module sorts them into

* ``ops``: calls that launch work (views and bare allocations excluded),
* ``syncs``: calls that read device data back to the host (``item``,
  ``_local_scalar_dense``, ``nonzero``, boolean-mask indexing, ...),
* ``h2d``: tensors built from host data (``torch.tensor``, ``from_numpy``,
  a Python scalar turned into a tensor) or copied from the CPU to another device.

Used by ``benchmarks/bench_ops.py`` and ``tests/test_sync_free.py``.

Example:
    >>> with count_ops() as c:
    ...     model.fit(x, y, epochs=1, verbose=0)
    >>> c.ops, c.syncs, c.h2d
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["OpCounts", "count_ops", "per_step"]

# Reads device memory on the host: a blocking sync on a GPU.
_SYNCS = {"_local_scalar_dense", "item", "nonzero", "nonzero_static", "masked_select",
          "is_nonzero", "equal", "unique", "_unique", "_unique2", "repeat_interleave"}
# Host data becoming a tensor.
_FROM_HOST = {"lift_fresh", "lift_fresh_copy", "scalar_tensor"}
# Memory or metadata only, no kernel (``_unsafe_view`` is the view half of a copying reshape);
# autograd's profiler markers (``_record_function_*``) launch nothing either.
_ALLOCS = {"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "_unsafe_view",
           "_reshape_alias", "_record_function_enter", "_record_function_enter_new",
           "_record_function_exit"}


@dataclass
class OpCounts:
    """Totals of one :func:`count_ops` block, with the op names behind ``ops``."""

    ops: int = 0
    syncs: int = 0
    h2d: int = 0
    names: Counter = field(default_factory=Counter)
    sync_names: Counter = field(default_factory=Counter)

    def __sub__(self, other: OpCounts) -> OpCounts:
        names, sync_names = Counter(self.names), Counter(self.sync_names)
        names.subtract(other.names)
        sync_names.subtract(other.sync_names)
        return OpCounts(self.ops - other.ops, self.syncs - other.syncs, self.h2d - other.h2d,
                        +names, +sync_names)


def _is_bool_index(name: str, args: tuple) -> bool:
    if name not in ("index", "index_put", "index_put_", "_index_put_impl_"):
        return False
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ())


def _is_h2d_copy(name: str, args: tuple, kwargs: dict) -> bool:
    if name == "_to_copy":
        src, dst = args[0], kwargs.get("device")
        return dst is not None and src.device.type == "cpu" and torch.device(dst).type != "cpu"
    if name == "copy_":
        return args[1].device.type == "cpu" and args[0].device.type != "cpu"
    return False


class _Counter(TorchDispatchMode):
    def __init__(self, counts: OpCounts) -> None:
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        c = self.counts
        if name in _SYNCS or _is_bool_index(name, args):
            c.syncs += 1
            c.sync_names[name] += 1
        if name in _FROM_HOST or _is_h2d_copy(name, args, kwargs):
            c.h2d += 1
            c.sync_names[name] += 1
        elif not (func.is_view or name in _ALLOCS or name in _SYNCS):
            c.ops += 1
            c.names[name] += 1
        return func(*args, **kwargs)


@contextlib.contextmanager
def count_ops() -> Iterator[OpCounts]:
    """Count the torch operations, host syncs and host-to-device copies inside the block."""
    counts = OpCounts()
    with _Counter(counts):
        yield counts


def per_step(run: Callable[[int], object], steps: tuple[int, int] = (2, 4)) -> OpCounts:
    """Counts per training step: ``run(n)`` trains ``n`` steps; two sizes are counted and
    differenced, so what happens once per call (set-up, the per-epoch read-back) cancels out.

    ``run`` is called once first to warm up (optimizer state, cached constants).
    """
    run(steps[0])
    small, large = steps
    with count_ops() as a:
        run(small)
    with count_ops() as b:
        run(large)
    diff, n = b - a, large - small
    return OpCounts(diff.ops / n, diff.syncs / n, diff.h2d / n,
                    Counter({k: v / n for k, v in diff.names.items()}),
                    Counter({k: v / n for k, v in diff.sync_names.items()}))

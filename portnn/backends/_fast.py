"""Fast paths: one library call where the portable Array API code needs several.

On a GPU every array operation is a kernel launch, so a training step's speed
is its number of operations; on NumPy a per-sample step's speed is its Python
overhead. Each function here takes the library's own shorter route (torch
``gather``/``index_select``/``unfold``/``fold``/``clamp`` and ``_foreach_*``;
CuPy strided window views; NumPy/CuPy native ``clip``, integer-array
indexing, ``add.reduce``; NumPy row maxima over a transposed copy, as a short
trailing axis is reduced one row at a time; a GEMM operand order OpenBLAS runs
faster; NumPy copies into the memory layout the next passes want) and otherwise
falls back to the portable Array API code. Inside ``with portable():`` every
function takes the portable route, which is how ``tests/test_fast_paths.py``
checks each fast path equal to it on every backend and device.
"""

from __future__ import annotations

import contextlib
import contextvars
import types
from collections.abc import Iterator
from typing import Any

import array_api_compat as compat
import numpy as np

from . import activate_for, array_namespace

__all__ = ["clip", "col2im", "contiguous", "foreach", "index_dtype", "iota", "launch_bound", "like", "mask",
           "matmul_nt", "mean", "portable", "row_argmax", "row_max", "scatter_add_rows", "sliding_windows",
           "sum", "take", "take_along_axis"]

_portable: contextvars.ContextVar[bool] = contextvars.ContextVar("portnn_portable", default=False)


@contextlib.contextmanager
def portable() -> Iterator[None]:
    """Use only the portable Array API code inside the block (to test the fast paths against it)."""
    token = _portable.set(True)
    try:
        yield
    finally:
        _portable.reset(token)


_IS_TORCH: dict[type, bool] = {}


def _torch(x: Any) -> bool:
    # Cached per array type: array-api-compat's checks cost microseconds, several times a step.
    kind = type(x)
    found = _IS_TORCH.get(kind)
    if found is None:
        found = _IS_TORCH[kind] = compat.is_torch_array(x)
    return found and not _portable.get()


_LIBS: dict[type, Any] = {}


def _numpy_or_cupy(x: Any) -> Any:
    """NumPy or CuPy itself (not the compat namespace) for their arrays, else ``None``."""
    kind = type(x)
    if kind not in _LIBS:
        _LIBS[kind] = None
        if compat.is_numpy_array(x):
            _LIBS[kind] = np
        elif compat.is_cupy_array(x):
            import cupy
            _LIBS[kind] = cupy
    return None if _portable.get() else _LIBS[kind]


def _numpy(x: Any) -> bool:
    """Whether ``x`` is a NumPy array and the fast paths are on: the cheapest test, for per-sample steps."""
    return type(x) is np.ndarray and not _portable.get()


def take(x: Any, rows: Any) -> Any:
    """``x[rows]`` along axis 0 (array-api-compat's torch ``take`` adds 3 ops for negative indices)."""
    if _numpy(x):
        return x[rows]
    if _torch(x):
        return x.index_select(0, rows)
    if _numpy_or_cupy(x) is not None:
        return x[rows]  # integer-array indexing skips numpy.take's Python wrapper
    return array_namespace(x).take(x, rows, axis=0)


def sum(x: Any, axis: int | None = None) -> Any:  # noqa: A001
    """``xp.sum`` (NumPy: ``add.reduce``, the same sum without 1 us of Python wrappers per call,
    which is most of a per-sample step's cost)."""
    if _numpy(x):
        return np.add.reduce(x, axis=axis)
    return array_namespace(x).sum(x, axis=axis)


def mean(x: Any) -> Any:
    """``xp.mean`` over all elements (NumPy: ``add.reduce`` over the size, without ``mean``'s wrappers)."""
    if _numpy(x):
        return np.add.reduce(x, axis=None) / x.size
    return array_namespace(x).mean(x)


def row_max(x: Any) -> Any:
    """``xp.max(x, axis=1, keepdims=True)`` of a 2-D ``x``.

    NumPy reduces a short trailing axis one row at a time (7 us for 128 rows of 10 logits);
    the maximum over the rows of the transposed copy is one vectorised pass per column (2 us).
    """
    if _numpy(x) and x.ndim == 2:
        return np.maximum.reduce(np.ascontiguousarray(x.T), axis=0)[:, None]
    return array_namespace(x).max(x, axis=1, keepdims=True)


def row_argmax(x: Any) -> Any:
    """``xp.argmax(x, axis=1)`` of a 2-D ``x`` (the first maximum).

    NumPy's arg-max of short rows is fast (1.3 us for 128 rows of 10), unlike its maximum:
    only the method call, without array-api-compat's wrapper.
    """
    if _numpy(x):
        return x.argmax(axis=1)
    return array_namespace(x).argmax(x, axis=1)


def matmul_nt(a: Any, b: Any) -> Any:
    """``a @ b.T`` of 2-D ``a`` and ``b`` sharing a long inner axis (a convolution's weight gradient).

    NumPy: ``(b @ a.T).T``, the same product; OpenBLAS takes a third less time for it when ``a``
    has few rows (32 x 12544 times 12544 x 144: 1.2 ms against 1.8 ms, one thread).
    """
    if _numpy(a):
        return (b @ a.T).T
    return a @ b.T


def scatter_add_rows(n: int, rows: Any, values: Any) -> Any:
    """``(n, D)`` zeros with each row ``values[i]`` added at row ``rows[i]``, repeated rows summed.

    NumPy ``add.at``, torch ``index_add_``, CuPy ``cupyx.scatter_add`` and JAX's ``.at[].add``
    sum repeats; elsewhere (and inside ``portable()``) a one-hot matrix product does, one op.
    """
    xp = array_namespace(values)
    shape, dtype = (n, values.shape[1]), values.dtype
    if _numpy(values):
        out = np.zeros(shape, dtype)
        np.add.at(out, rows, values)
        return out
    if _torch(values):
        import torch

        return torch.zeros(shape, dtype=dtype, device=values.device).index_add_(0, rows, values)
    if _numpy_or_cupy(values) is not None:
        import cupyx

        out = xp.zeros(shape, dtype=dtype)
        cupyx.scatter_add(out, rows, values)
        return out
    if compat.is_jax_array(values) and not _portable.get():
        return xp.zeros(shape, dtype=dtype).at[rows].add(values)
    hot = xp.astype(rows[:, None] == iota(n, like=rows)[None, :], dtype)  # (M, n)
    return hot.T @ values


def take_along_axis(x: Any, indices: Any, axis: int) -> Any:
    """``xp.take_along_axis`` (torch: one ``gather`` instead of 5 ops)."""
    if _torch(x):
        return x.gather(axis, indices)
    if _numpy_or_cupy(x) is not None and x.ndim == 2 and axis in (1, -1):
        # Integer-array indexing: NumPy's take_along_axis builds its index in Python (~15 us).
        return x[iota(x.shape[0], like=indices)[:, None], indices]
    return array_namespace(x).take_along_axis(x, indices, axis=axis)


def mask(condition: Any, dtype: Any) -> Any:
    """A boolean array as something to multiply a ``dtype`` array by.

    torch multiplies by a bool tensor in one kernel. The standard has no bool-float
    promotion, so elsewhere it becomes 0/1 of ``dtype``; on NumPy that is also the
    faster way, as multiplying by bools casts them in a buffered loop (a ReLU's
    128 x 256 mask: 2.9 us to convert, then 3.1 us per multiply, against 6.9 us).
    """
    if _torch(condition):
        return condition
    return array_namespace(condition).astype(condition, dtype)


def clip(x: Any, min: float | None = None, max: float | None = None) -> Any:  # noqa: A002
    """``xp.clip`` with Python-float bounds, without host syncs or scalar-to-array copies.

    array-api-compat's generic clip (used for CuPy) indexes with boolean masks,
    and each masked read or write syncs the GPU; the libraries' own clips do not.
    """
    if _torch(x):
        return x.clamp(min=min, max=max)
    if _numpy(x) and max is None and min is not None:
        return np.maximum(x, min)  # a ReLU: numpy.clip's Python wrappers cost it 2-3x
    lib = _numpy_or_cupy(x)
    if lib is not None:
        return lib.clip(x, min, max)
    return array_namespace(x).clip(x, min=min, max=max)


_INDEX: dict[type, Any] = {}


def index_dtype(x: Any) -> Any:
    """The widest integer dtype of ``x``'s namespace: int64, or int32 where it has none (JAX
    without x64, which would truncate int64 with a warning)."""
    kind = type(x)
    found = _INDEX.get(kind)
    if found is None:
        xp = array_namespace(x)
        found = getattr(xp, "int64" if "int64" in xp.__array_namespace_info__().dtypes(
            kind="signed integer") else "int32")
        if not compat.is_jax_array(x):  # JAX's answer changes with jax.enable_x64: never kept
            _INDEX[kind] = found
    return found


_IOTA: dict[tuple[Any, ...], Any] = {}


def iota(n: int, like: Any) -> Any:
    """``arange(n)`` (:func:`index_dtype`) on ``like``'s device, made once and reused, so it costs
    no op per step. Not kept for JAX: inside a compiled step it is a constant of the program, and a
    kept one would be a traced value outliving its trace."""
    xp = array_namespace(like)
    if compat.is_jax_array(like):
        return xp.arange(n, dtype=index_dtype(like))
    device = compat.device(like)
    key = (type(like), str(device), n)
    found = _IOTA.get(key)
    if found is None:
        with activate_for(like):  # array-api-compat's CuPy arange ignores device=: the current one
            found = _IOTA[key] = xp.arange(n, dtype=index_dtype(like), device=device)
    return found


def launch_bound(x: Any) -> bool:
    """Whether fewer, larger operations beat more, cheaper ones for ``x``'s library.

    True on GPUs and for torch, whose every op is a kernel launch or a dispatch;
    False for NumPy, where an element-wise pass over strided views is cheap but a
    reduction along a short trailing axis (a 2x2 window) costs a loop per row.
    """
    return _portable.get() or not compat.is_numpy_array(x)


def sliding_windows(x: Any, kernel: tuple[int, int], stride: tuple[int, int], first: int) -> Any | None:
    """A view of every window of ``x`` with ``(kh, kw)`` appended, or ``None``.

    The image's height is axis ``first`` of the 4-d ``x`` (C first), its width the next: the
    view is ``(C, ..., oh, ow, ..., kh, kw)``. ``None`` where the library has no strided window view
    (the caller stacks one slice per offset), and for NumPy, where copying that 6-d view is
    no faster than stacking the slices (and was slower in the (C, N, H, W) layout).
    """
    (kh, kw), (sh, sw) = kernel, stride
    if _torch(x):
        return x.unfold(first, kh, sh).unfold(first + 1, kw, sw)
    lib = _numpy_or_cupy(x)
    if lib is not None and lib.__name__ == "cupy":
        # From strides, metadata only: CuPy's sliding_window_view copies the window shape to the
        # GPU and tests it there with `if`, a host-to-device copy and a blocking read per call.
        (h, w), strides = x.shape[first:first + 2], x.strides
        shape = (*x.shape[:first], (h - kh) // sh + 1, (w - kw) // sw + 1, *x.shape[first + 2:], kh, kw)
        steps = (*strides[:first], strides[first] * sh, strides[first + 1] * sw, *strides[first + 2:],
                 strides[first], strides[first + 1])
        return lib.lib.stride_tricks.as_strided(x, shape=shape, strides=steps)
    return None


def col2im(cols: Any, shape: tuple[int, int, int, int], kernel: tuple[int, int],
           stride: tuple[int, int], first: int) -> Any | None:
    """The adjoint of :func:`sliding_windows`, or ``None`` (the caller scatter-adds per offset).

    ``cols`` is ``(C, kh*kw, ...)``, the patches in ``shape``'s axis order: ``(C, N, H, W)``
    (``first`` 2) or ``(C, H, W, N)`` (``first`` 1), with the output's size in place of H, W.
    """
    (kh, kw), (sh, sw) = kernel, stride
    h, w = shape[first:first + 2]
    oh, ow = cols.shape[first + 1:first + 3]
    if _torch(cols):
        import torch

        # fold sums the (batch, channels*kh*kw, positions) columns back onto the image: one kernel.
        c, n = shape[0], shape[3 if first == 1 else 1]
        if first == 2:
            batched = cols.reshape(c * kh * kw, n, oh * ow).permute(1, 0, 2)
        else:
            batched = cols.reshape(c * kh * kw, oh * ow, n).permute(2, 0, 1)
        out = torch.nn.functional.fold(batched, (h, w), (kh, kw), stride=(sh, sw))
        return out.permute(1, 0, 2, 3) if first == 2 else out.permute(1, 2, 3, 0)
    lib = _numpy_or_cupy(cols)
    if lib is None:
        return None
    dx = lib.zeros(shape, dtype=cols.dtype)
    for k in range(kh * kw):
        i, j = divmod(k, kw)
        rows, columns = slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw)
        dx[(slice(None),) * first + (rows, columns)] += cols[:, k]
    return dx


def contiguous(x: Any) -> Any:
    """``x`` as a C-contiguous array on NumPy (a copy only when it is not one); else ``x``.

    Copying an unpadded convolution input into Conv2D's (C, H, W, N) order once makes each
    kernel offset's window copy contiguous: 16 -> 32 channels, 64 images of 14x14, 2.1 -> 1.4 ms.
    """
    return np.ascontiguousarray(x) if _numpy(x) else x


def like(a: Any, template: Any) -> Any:
    """``a`` laid out in memory as ``template`` (same shape), where that is faster; else ``a``.

    NumPy runs element-wise passes over two arrays of different layouts several times
    slower (Flatten's C-ordered gradient against the (C, H, W, N) activations of the
    convolutions before it: 1.4 ms against 0.3 ms for a 64-image max-pool backward), so
    there the gradient is copied into the template's layout once. Other libraries: as is.
    """
    if _numpy(a) and a.strides != template.strides:
        out = np.empty_like(template, dtype=a.dtype)
        out[...] = a
        return out
    return a


def foreach(x: Any) -> Any:
    """Multi-tensor operations for ``x``'s library, named and called as torch's ``_foreach_*``.

    ``mul_``, ``div_``, ``add_`` (a list or a scalar), ``add``, ``lerp_``,
    ``addcmul_``, ``addcdiv_`` and ``sqrt`` take lists of arrays and return the
    resulting list, which the caller keeps. torch: its own ``_foreach_*``, one
    call for the whole list (one kernel launch on a GPU instead of one per
    array); elsewhere (and inside ``portable()``) :data:`PORTABLE_FOREACH`.
    """
    global _TORCH_FOREACH
    if not _torch(x):
        return PORTABLE_FOREACH
    if _TORCH_FOREACH is None:
        import torch

        def returning(op: Any) -> Any:
            def run(xs: list[Any], *args: Any, **kwargs: Any) -> list[Any]:
                op(xs, *args, **kwargs)
                return xs
            return run

        ops = {name: getattr(torch, f"_foreach_{name}") for name in ("add", "sqrt")}
        ops.update({name: returning(getattr(torch, f"_foreach_{name}")) for name in (
            "mul_", "div_", "add_", "lerp_", "addcmul_", "addcdiv_")})
        _TORCH_FOREACH = types.SimpleNamespace(**ops)
    return _TORCH_FOREACH


_TORCH_FOREACH: Any = None

# The portable multi-tensor operations: a loop over the list. ``x *= a`` is in place on NumPy,
# CuPy and torch and a new array where arrays are immutable (JAX), so each op collects what its
# statements leave in ``x`` and returns that. The passes over memory are those of the
# per-parameter expressions they replace (``m *= b1; m += (1 - b1) * g``).


def _mul_(xs: list[Any], scalar: float) -> list[Any]:
    out = []
    for x in xs:
        x *= scalar
        out.append(x)
    return out


def _div_(xs: list[Any], scalar: float) -> list[Any]:
    out = []
    for x in xs:
        x /= scalar
        out.append(x)
    return out


def _add_(xs: list[Any], other: Any, alpha: float = 1.0) -> list[Any]:
    out = []
    if not isinstance(other, list):
        for x in xs:
            x += other
            out.append(x)
    elif _one(alpha):
        for x, y in zip(xs, other, strict=True):
            x += y
            out.append(x)
    else:
        for x, y in zip(xs, other, strict=True):
            x += alpha * y
            out.append(x)
    return out


def _add(xs: list[Any], ys: list[Any], alpha: float = 1.0) -> list[Any]:
    return [x + (y if _one(alpha) else alpha * y) for x, y in zip(xs, ys, strict=True)]


def _one(alpha: Any) -> bool:
    """Whether a factor is the Python number 1 (a traced learning rate inside a compiled step is not)."""
    return isinstance(alpha, int | float) and alpha == 1


def _lerp_(xs: list[Any], ends: list[Any], weight: float) -> list[Any]:
    out = []
    for x, end in zip(xs, ends, strict=True):
        x *= 1 - weight
        x += weight * end
        out.append(x)
    return out


def _addcmul_(xs: list[Any], a: list[Any], b: list[Any], value: float = 1.0) -> list[Any]:
    out = []
    for x, p, q in zip(xs, a, b, strict=True):
        x += value * (p * q)
        out.append(x)
    return out


def _addcdiv_(xs: list[Any], a: list[Any], b: list[Any], value: float = 1.0) -> list[Any]:
    out = []
    for x, p, q in zip(xs, a, b, strict=True):
        x += value * (p / q)
        out.append(x)
    return out


def _sqrt(xs: list[Any]) -> list[Any]:
    return [array_namespace(x).sqrt(x) for x in xs]


PORTABLE_FOREACH = types.SimpleNamespace(mul_=_mul_, div_=_div_, add_=_add_, add=_add, lerp_=_lerp_,
                                         addcmul_=_addcmul_, addcdiv_=_addcdiv_, sqrt=_sqrt)

"""2-D convolution by im2col: one sliding-window view (or a strided slice per kernel offset), then one matmul.

The helpers here (argument pairs, output sizes, the kernel-offset windows and
their scatter-add inverse) are shared with the pooling layers.
"""

from __future__ import annotations

from typing import Any

import array_api_extra as xpx
from array_api_compat import device as device_of

from .. import _checks, initializers
from ..backends import _fast as fast
from ..backends import array_namespace
from ._base import Layer

Pair = int | tuple[int, int]


def pair(value: Pair, layer: str, name: str, minimum: int = 1) -> tuple[int, int]:
    """``value`` as an ``(h, w)`` pair of ints >= ``minimum`` (an error naming the argument)."""
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise ValueError(f"{layer}: {name} must be an int >= {minimum} or a pair of them, "
                             f"got {value!r}")
        return tuple(_checks.integer(layer, name, v, minimum) for v in value)
    return (_checks.integer(layer, name, value, minimum),) * 2


def check_nchw(layer: str, x: Any, channels: int | None = None) -> None:
    """A ValueError naming ``layer`` unless ``x`` is ``(batch, channels, height, width)``."""
    if x.ndim != 4 or (channels is not None and x.shape[1] != channels):
        want = "channels" if channels is None else channels
        raise ValueError(f"{layer} expects input of shape (batch, {want}, height, width), "
                         f"got {tuple(x.shape)}")


def out_size(layer: str, hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
             padding: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    """The output height and width, or a ValueError naming ``layer`` when one is < 1."""
    size = tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(hw, kernel, stride, padding, strict=True))
    if min(size) < 1:
        raise ValueError(f"{layer}: input of height x width {hw[0]}x{hw[1]} (padding {padding}) is "
                         f"smaller than the kernel {kernel}; the output would be {size[0]}x{size[1]}")
    return size


def _slot(i: int, j: int, stride: tuple[int, int], out: tuple[int, int], first: int) -> tuple[slice, ...]:
    """The index of kernel offset ``(i, j)``'s strided window; height is axis ``first``, width the next."""
    (sh, sw), (oh, ow) = stride, out
    return (slice(None),) * first + (slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw),
                                     ...)


def windows(x: Any, kernel: tuple[int, int], stride: tuple[int, int], out: tuple[int, int],
            first: int = 2) -> list[Any]:
    """One strided view per kernel offset, row-major over the kernel; the image's height is
    axis ``first`` of ``x`` and its width the next (NCHW and (C, N, H, W): 2; (C, H, W, N): 1)."""
    return [x[_slot(i, j, stride, out, first)] for i in range(kernel[0]) for j in range(kernel[1])]


def scatter_windows(parts: list[Any], shape: tuple[int, ...], kernel: tuple[int, int],
                    stride: tuple[int, int], first: int = 2) -> Any:
    """The adjoint of :func:`windows`: add each offset's part back in place into zeros of ``shape``."""
    xp = array_namespace(parts[0])
    out = tuple(parts[0].shape[first:first + 2])
    dx = xp.zeros(shape, dtype=parts[0].dtype, device=device_of(parts[0]))
    for k, part in enumerate(parts):
        dx = xpx.at(dx)[_slot(*divmod(k, kernel[1]), stride, out, first)].add(part)
    return dx


def unpad(x: Any, padding: tuple[int, int], first: int) -> Any:
    """Strip ``padding`` rows and columns from both sides; height is axis ``first``, width the next."""
    (ph, pw), (h, w) = padding, x.shape[first:first + 2]
    return x[(slice(None),) * first + (slice(ph, h - ph), slice(pw, w - pw), ...)]


def layout(x: Any) -> tuple[tuple[int, ...], int]:
    """Conv2D's internal axis order for ``x`` (from NCHW) and the position of its height axis.

    (C, H, W, N) on NumPy: every image row of a kernel window, and of a 2x2 pooling window
    after the convolution, is then one run of W*N contiguous values (NCHW rows give runs of
    14), which NumPy's element-wise loops want. (C, N, H, W) elsewhere, as GPU kernels and
    torch's fold take images batch-first (torch on the CPU runs it 1.7x faster).
    """
    return ((1, 0, 2, 3), 2) if fast.launch_bound(x) else ((1, 2, 3, 0), 1)


class Conv2D(Layer):
    """2-D convolution over NCHW inputs; ``weight`` is ``(out_channels, in_channels, kh, kw)``.

    Example:
        >>> conv = portnn.Conv2D(1, 8, kernel_size=3, padding=1)
        >>> conv.forward(np.ones((2, 1, 28, 28), np.float32)).shape
        (2, 8, 28, 28)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Pair, stride: Pair = 1,
                 padding: Pair = 0, bias: bool = True,
                 init: str | initializers.Initializer = "he_uniform", dtype: str = "float32") -> None:
        super().__init__()
        self.name = name = f"Conv2D({in_channels!r}, {out_channels!r})"
        self.in_channels = _checks.integer(name, "in_channels", in_channels)
        self.out_channels = _checks.integer(name, "out_channels", out_channels)
        self.bias = _checks.boolean(name, "bias", bias)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.init, self.dtype = init, _checks.float_dtype(name, dtype)
        self._k = pair(kernel_size, self.name, "kernel_size")
        self._s = pair(stride, self.name, "stride")
        self._p = pair(padding, self.name, "padding", minimum=0)
        area = self._k[0] * self._k[1]
        shape = (out_channels, in_channels, *self._k)
        self.add_param("weight", initializers.get(init)(shape, in_channels * area, out_channels * area))
        if bias:
            self.add_param("bias", initializers.zeros((out_channels,)))

    def forward(self, x: Any, training: bool = False) -> Any:
        check_nchw(self.name, x, self.in_channels)
        xp = array_namespace(x)
        n, _, h, w = x.shape
        self._out = oh, ow = out_size(self.name, (h, w), self._k, self._s, self._p)
        # Channels first (see layout()): the patches form one (C*kh*kw, positions) matrix, so the
        # whole batch is a single GEMM. Padding copies the permuted input once anyway.
        perm, first = self._perm, self._first = layout(x)
        x = xp.permute_dims(x, perm)
        ph, pw = self._p
        if ph or pw:
            pads = [(0, 0)] * 4
            pads[first:first + 2] = (ph, ph), (pw, pw)
            x = xpx.pad(x, tuple(pads), xp=xp)
        else:
            x = fast.contiguous(x)  # NumPy: the window copies below then read contiguous rows
        self._padded = tuple(x.shape)
        self._inner = tuple({0: n, 2: oh, 3: ow}[axis] for axis in perm[1:])  # output, less C
        # cols[(c, i, j), position] = x[n, c, y*sh + i, x*sw + j]: rows in weight's C-order.
        view = fast.sliding_windows(x, self._k, self._s, first)  # (C, ..., kh, kw) or None
        if view is not None:
            self.cols = xp.reshape(xp.permute_dims(view, (0, 4, 5, 1, 2, 3)), (-1, n * oh * ow))
        else:
            self.cols = xp.reshape(xp.stack(windows(x, self._k, self._s, self._out, first), axis=1),
                                   (-1, n * oh * ow))
        y = xp.reshape(self.params["weight"], (self.out_channels, -1)) @ self.cols
        if self.bias:
            y += self.params["bias"][:, None]  # in place: y is new (as in Dense)
        # NCHW to the caller, a view of the internal memory: element-wise layers keep its layout.
        return xp.permute_dims(xp.reshape(y, (self.out_channels, *self._inner)), _inverse(perm))

    def backward(self, dy: Any) -> Any:
        xp = array_namespace(dy)
        first = self._first
        dy = self._param_grads(dy)
        weight = xp.reshape(self.params["weight"], (self.out_channels, -1))
        dcols = xp.reshape(weight.T @ dy, (self.in_channels, self._k[0] * self._k[1], *self._inner))
        dx = fast.col2im(dcols, self._padded, self._k, self._s, first)
        if dx is None:
            dx = scatter_windows([dcols[:, k, ...] for k in range(dcols.shape[1])], self._padded,
                                 self._k, self._s, first)
        return xp.permute_dims(unpad(dx, self._p, first), _inverse(self._perm))

    def backward_params(self, dy: Any) -> None:
        # A first layer's dx (a GEMM and a col2im) is wasted work: skip it.
        self._param_grads(dy)

    def _param_grads(self, dy: Any) -> Any:
        """Fill ``grads`` and return ``dy`` as the ``(out_channels, positions)`` matrix."""
        xp = array_namespace(dy)
        dy = xp.reshape(xp.permute_dims(dy, self._perm), (self.out_channels, -1))
        self.grads["weight"] = xp.reshape(fast.matmul_nt(dy, self.cols), tuple(self.params["weight"].shape))
        if self.bias:
            self.grads["bias"] = xp.sum(dy, axis=1)
        return dy


def _inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(perm.index(axis) for axis in range(len(perm)))


class Conv2DTranspose(Layer):
    """Transposed 2-D convolution (the adjoint of :class:`Conv2D`), as ``torch.nn.ConvTranspose2d``.

    ``weight`` is ``(in_channels, out_channels, kh, kw)``; the output of an ``(N, C, H, W)`` input
    is ``(H - 1) * stride - 2 * padding + kh + output_padding`` high (likewise wide): each input
    value adds its weighted kernel into the output. Built from the pieces of :class:`Conv2D`: one
    matrix product for every kernel offset, then :func:`scatter_windows` (col2im) forward, and
    :func:`windows` (im2col) plus two products backward.

    Example:
        >>> up = portnn.Conv2DTranspose(8, 1, kernel_size=2, stride=2)
        >>> up.forward(np.ones((2, 8, 14, 14), np.float32)).shape
        (2, 1, 28, 28)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Pair, stride: Pair = 1,
                 padding: Pair = 0, output_padding: Pair = 0, bias: bool = True,
                 init: str | initializers.Initializer = "he_uniform", dtype: str = "float32") -> None:
        super().__init__()
        self.name = name = f"Conv2DTranspose({in_channels!r}, {out_channels!r})"
        self.in_channels = _checks.integer(name, "in_channels", in_channels)
        self.out_channels = _checks.integer(name, "out_channels", out_channels)
        self.bias = _checks.boolean(name, "bias", bias)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.output_padding = output_padding
        self.init, self.dtype = init, _checks.float_dtype(name, dtype)
        self._k = pair(kernel_size, name, "kernel_size")
        self._s = pair(stride, name, "stride")
        self._p = pair(padding, name, "padding", minimum=0)
        self._op = pair(output_padding, name, "output_padding", minimum=0)
        if any(op >= s for op, s in zip(self._op, self._s, strict=True)):
            raise ValueError(f"{name}: output_padding {self._op} must be smaller than the stride {self._s}")
        area = self._k[0] * self._k[1]
        self.add_param("weight", initializers.get(init)((in_channels, out_channels, *self._k),
                                                        out_channels * area, in_channels * area))
        if bias:
            self.add_param("bias", initializers.zeros((out_channels,)))

    def forward(self, x: Any, training: bool = False) -> Any:
        check_nchw(self.name, x, self.in_channels)
        xp, (n, c, h, w), (kh, kw), (sh, sw) = array_namespace(x), x.shape, self._k, self._s
        full = ((h - 1) * sh + kh + self._op[0], (w - 1) * sw + kw + self._op[1])
        (ph, pw), out = self._p, (full[0] - 2 * self._p[0], full[1] - 2 * self._p[1])
        if min(out) < 1:
            raise ValueError(f"{self.name}: input of height x width {h}x{w} gives an output of "
                             f"{out[0]}x{out[1]} with padding {self._p}; use less padding")
        self._x = xp.reshape(xp.permute_dims(x, (0, 2, 3, 1)), (n * h * w, c))  # (positions, C_in)
        self._hw = (h, w)
        weight = xp.reshape(self.params["weight"], (c, -1))  # (C_in, C_out * kh * kw)
        parts = xp.permute_dims(xp.reshape(self._x @ weight, (n, h, w, self.out_channels, kh * kw)),
                                (4, 0, 3, 1, 2))  # one (N, C_out, H, W) part per kernel offset
        y = scatter_windows([parts[k, ...] for k in range(kh * kw)], (n, self.out_channels, *full),
                            self._k, self._s)
        y = y[:, :, ph:full[0] - ph, pw:full[1] - pw]
        return y + self.params["bias"][:, None, None] if self.bias else y

    def backward(self, dy: Any) -> Any:
        xp, (n, c_out), (ph, pw) = array_namespace(dy), dy.shape[:2], self._p
        (h, w), area = self._hw, self._k[0] * self._k[1]
        if self.bias:
            self.grads["bias"] = xp.sum(dy, axis=(0, 2, 3))
        padded = xpx.pad(dy, ((0, 0), (0, 0), (ph, ph), (pw, pw)), xp=xp) if ph or pw else dy
        cols = xp.stack(windows(padded, self._k, self._s, (h, w)), axis=-1)  # (N, C_out, H, W, K)
        cols = xp.reshape(xp.permute_dims(cols, (0, 2, 3, 1, 4)), (n * h * w, c_out * area))
        weight = xp.reshape(self.params["weight"], (self.in_channels, -1))
        self.grads["weight"] = xp.reshape(self._x.T @ cols, tuple(self.params["weight"].shape))
        return xp.permute_dims(xp.reshape(cols @ weight.T, (n, h, w, self.in_channels)), (0, 3, 1, 2))

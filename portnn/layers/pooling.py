"""2-D max and average pooling over NCHW inputs (no padding, as PyTorch's defaults).

Two ways to pool, both plain Array API code: by a reshape into non-overlapping
``(N, C, oh, ow, kh*kw)`` tiles and one reduction (few operations: what a GPU,
where each is a kernel launch, wants), or by one element-wise pass per kernel
offset over strided views (what NumPy wants, and what overlapping windows need).
"""

from __future__ import annotations

from typing import Any

import array_api_extra as xpx

from .. import _checks
from ..backends import _fast as fast
from ..backends import array_namespace
from ._base import Layer
from .conv import Pair, check_nchw, device_of, out_size, pair, scatter_windows, windows


class _Pool2D(Layer):
    """Shared argument handling: ``stride`` defaults to ``kernel_size``."""

    def __init__(self, kernel_size: Pair, stride: Pair | None = None) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.name = f"{type(self).__name__}({kernel_size})"
        self._k = pair(kernel_size, self.name, "kernel_size")
        self._s = self._k if stride is None else pair(stride, self.name, "stride")

    def _tiled(self, x: Any) -> bool:
        return self._k == self._s and fast.launch_bound(x)

    def _gather(self, grads: list[Any]) -> Any:
        """The input gradient from one ``(N, C, oh, ow)`` gradient per kernel offset."""
        if self._k != self._s:
            return scatter_windows(grads, self._shape, self._k, self._s)
        # Non-overlapping tiles: each offset's gradient fills its strided slot, cheaper than
        # zero-filling and scatter-adding K slices. Made like the input ``self.x`` (``empty_like`` keeps
        # NumPy's memory order, so the next layers' element-wise passes and GEMM operands see one
        # layout); zeros only where rows or columns past the last tile get no gradient.
        xp = array_namespace(grads[0])
        (kh, kw), (h, w), (oh, ow) = self._k, self._shape[2:], grads[0].shape[2:]
        new = xp.empty_like if (oh * kh, ow * kw) == (h, w) else xp.zeros_like
        dx = new(self.x, dtype=grads[0].dtype)
        for k, part in enumerate(grads):
            i, j = divmod(k, kw)
            # Only NumPy gets here (tiles are not launch-bound there), so the write is in place;
            # every other library takes the tiled path, and overlapping windows scatter_windows.
            dx[:, :, i:oh * kh:kh, j:ow * kw:kw] = part
        return dx

    def _check(self, x: Any) -> tuple[int, int]:
        check_nchw(self.name, x)
        self._shape = tuple(x.shape)
        return out_size(self.name, self._shape[2:], self._k, self._s)

    def _tiles(self, x: Any, out: tuple[int, int]) -> Any:
        """Non-overlapping windows as ``(N, C, oh, ow, kh*kw)`` (rows/columns past the last tile dropped)."""
        xp = array_namespace(x)
        (kh, kw), (oh, ow), (n, c) = self._k, out, x.shape[:2]
        tiles = xp.reshape(x[:, :, :oh * kh, :ow * kw], (n, c, oh, kh, ow, kw))
        return xp.reshape(xp.permute_dims(tiles, (0, 1, 2, 4, 3, 5)), (n, c, oh, ow, kh * kw))

    def _untile(self, dtiles: Any) -> Any:
        """The adjoint of :meth:`_tiles`: ``(N, C, oh, ow, kh*kw)`` back to the input's shape."""
        xp = array_namespace(dtiles)
        (kh, kw), (n, c), (oh, ow) = self._k, self._shape[:2], dtiles.shape[2:4]
        dx = xp.reshape(dtiles, (n, c, oh, ow, kh, kw))
        return self._pad(xp.reshape(xp.permute_dims(dx, (0, 1, 2, 4, 3, 5)), (n, c, oh * kh, ow * kw)))

    def _pad(self, dx: Any) -> Any:
        """Zero rows and columns for the input's remainder past the last whole tile."""
        (h, w), (th, tw) = self._shape[2:], dx.shape[2:]
        if (th, tw) == (h, w):
            return dx
        return xpx.pad(dx, ((0, 0), (0, 0), (0, h - th), (0, w - tw)), xp=array_namespace(dx))


class MaxPool2D(_Pool2D):
    """Maximum over each window; the gradient goes to the first maximum, as in PyTorch.

    Example:
        >>> portnn.MaxPool2D(2).forward(np.ones((1, 3, 28, 28), np.float32)).shape
        (1, 3, 14, 14)
    """

    def forward(self, x: Any, training: bool = False) -> Any:
        xp = array_namespace(x)
        out = self._check(x)
        if self._tiled(x):
            tiles = self._tiles(x, out)
            # argmax picks the first maximum of each window, as PyTorch's gradient does.
            self._argmax = xp.argmax(tiles, axis=-1)
            return xp.max(tiles, axis=-1)
        # A running maximum over the kernel offsets' strided views, and the offset it came from:
        # a strictly greater value takes over, so the first maximum wins, as PyTorch's gradient.
        # Since the offsets rise, the winner is the largest ``k`` that took over.
        self.x, parts = x, windows(x, self._k, self._s, out)
        y, self._argmax = parts[0], None
        index = xp.int8 if len(parts) <= 127 else xp.int32
        for k, part in enumerate(parts[1:], start=1):
            took = xp.astype(part > y, index) * k
            self._argmax = took if self._argmax is None else xp.maximum(self._argmax, took)
            y = xp.maximum(y, part)
        return y

    def backward(self, dy: Any) -> Any:
        if self._tiled(dy):
            first = self._argmax[..., None] == fast.iota(self._k[0] * self._k[1], like=self._argmax)
            return self._untile(dy[..., None] * fast.mask(first, dy.dtype))
        if self._argmax is None:  # a 1x1 window: every value is its own maximum
            return self._gather([dy])
        # Multiplying by a 0/1 mask is much faster than xp.where, which branches per element.
        return self._gather([dy * fast.mask(self._argmax == k, dy.dtype)
                             for k in range(self._k[0] * self._k[1])])


class AvgPool2D(_Pool2D):
    """Mean over each window.

    Example:
        >>> portnn.AvgPool2D(2).forward(np.ones((1, 3, 28, 28), np.float32)).shape
        (1, 3, 14, 14)
    """

    def forward(self, x: Any, training: bool = False) -> Any:
        out = self._check(x)
        area = self._k[0] * self._k[1]
        if self._tiled(x):
            return array_namespace(x).sum(self._tiles(x, out), axis=-1) / area
        self.x, parts = x, windows(x, self._k, self._s, out)
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total / area

    def backward(self, dy: Any) -> Any:
        area = self._k[0] * self._k[1]
        if self._tiled(dy):
            xp = array_namespace(dy)
            return self._untile(xp.broadcast_to((dy / area)[..., None], (*dy.shape, area)))
        return self._gather([dy / area] * area)


class GlobalAvgPool2D(Layer):
    """The mean over each channel's image: ``(N, C, H, W)`` to ``(N, C)``.

    Example:
        >>> portnn.GlobalAvgPool2D().forward(np.ones((2, 3, 7, 7), np.float32)).shape
        (2, 3)
    """

    name = "GlobalAvgPool2D()"

    def forward(self, x: Any, training: bool = False) -> Any:
        check_nchw(self.name, x)
        self._shape = tuple(x.shape)
        return array_namespace(x).mean(x, axis=(2, 3))

    def backward(self, dy: Any) -> Any:
        n, c, h, w = self._shape
        xp = array_namespace(dy)
        zeros = xp.zeros(self._shape, dtype=dy.dtype, device=device_of(dy))
        return zeros + (dy / (h * w))[:, :, None, None]  # a writable array, not a broadcast view


class UpSampling2D(Layer):
    """Nearest-neighbour upsampling: each value becomes a ``scale_factor`` block, ``(N, C, H, W)`` to
    ``(N, C, H*sh, W*sw)``, as ``torch.nn.Upsample(scale_factor, mode="nearest")`` for integer factors.

    Example:
        >>> portnn.UpSampling2D(2).forward(np.ones((1, 1, 3, 3), np.float32)).shape
        (1, 1, 6, 6)
    """

    def __init__(self, scale_factor: int | tuple[int, int] = 2) -> None:
        super().__init__()
        self.name = name = f"UpSampling2D({scale_factor!r})"
        pair = (scale_factor, scale_factor) if isinstance(scale_factor, int) else tuple(scale_factor)
        if len(pair) != 2:
            raise ValueError(f"{name}: scale_factor must be an int or a pair (sh, sw), got {scale_factor!r}")
        self.scale_factor = scale_factor
        self._s = tuple(_checks.integer(name, "scale_factor", s) for s in pair)

    def forward(self, x: Any, training: bool = False) -> Any:
        check_nchw(self.name, x)
        xp, (n, c, h, w), (sh, sw) = array_namespace(x), x.shape, self._s
        blocks = xp.broadcast_to(x[:, :, :, None, :, None], (n, c, h, sh, w, sw))
        return xp.reshape(blocks, (n, c, h * sh, w * sw))

    def backward(self, dy: Any) -> Any:
        xp, (n, c, hh, ww), (sh, sw) = array_namespace(dy), dy.shape, self._s
        return xp.sum(xp.reshape(dy, (n, c, hh // sh, sh, ww // sw, sw)), axis=(3, 5))

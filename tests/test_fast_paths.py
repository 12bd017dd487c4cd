"""Every fast path in portnn.backends._fast gives what the portable Array API code gives,
on every backend and device: each check runs once as is and once inside ``fast.portable()``."""

import numpy as np
import pytest

import portnn
from conftest import has_float64
from portnn.backends import _fast as fast
from portnn.layers.conv import scatter_windows, windows

rng = np.random.default_rng(0)


def _both(fn):
    """``fn()`` with the fast paths, then with the portable code only, as host arrays."""
    def host(out):
        return [portnn.to_numpy(o).copy() for o in (out if isinstance(out, tuple) else (out,))]
    fast_out = host(fn())
    with fast.portable():
        portable_out = host(fn())
    return fast_out, portable_out


def _assert_same(be, fn, rtol=None):
    tol = rtol if rtol is not None else (1e-12 if has_float64(be) else 1e-6)
    got, want = _both(fn)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def _dtype(be):
    return "float64" if has_float64(be) else "float32"


def test_take_and_reductions(backend):
    x = backend.asarray(rng.standard_normal((6, 4)), dtype=_dtype(backend))
    ties = backend.asarray(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [0.0, -1.0, 0.0]]),
                           dtype=_dtype(backend))  # argmax: the first maximum
    rows = backend.asarray(np.array([5, 0, 0, 3]))
    cols = backend.asarray(np.array([[3], [0], [1], [1], [2], [0]]))
    _assert_same(backend, lambda: (fast.take(x, rows), fast.take_along_axis(x, cols, axis=1),
                                   fast.sum(x, axis=0), fast.sum(x), fast.mean(x), fast.row_max(x),
                                   fast.row_argmax(x), fast.row_max(ties), fast.row_argmax(ties),
                                   fast.matmul_nt(x[:3, :], x)))


def test_mask_and_clip(backend):
    x = backend.asarray(rng.standard_normal((5, 3)), dtype=_dtype(backend))
    _assert_same(backend, lambda: (x * fast.mask(x > 0, x.dtype), fast.clip(x, min=-0.5),
                                   fast.clip(x, max=0.25), fast.clip(x, min=-0.1, max=0.1)))


def test_like_keeps_values_and_takes_the_template_layout(backend):
    xp = backend.xp
    template = xp.permute_dims(backend.asarray(rng.standard_normal((3, 4, 5)), dtype=_dtype(backend)),
                               (2, 0, 1))  # (5, 3, 4), not C-ordered
    a = backend.asarray(rng.standard_normal((5, 3, 4)), dtype=_dtype(backend))
    _assert_same(backend, lambda: (fast.like(a, template), fast.contiguous(template)))
    if backend.name == "numpy":
        assert fast.like(a, template).strides == template.strides


@pytest.mark.parametrize("first", [1, 2], ids=["CHWN", "CNHW"])
@pytest.mark.parametrize("kernel,stride", [((3, 3), (1, 1)), ((2, 3), (2, 1)), ((3, 2), (2, 3))])
def test_sliding_windows_and_col2im(backend, kernel, stride, first):
    # Conv2D's layouts: (C, H, W, N) or (C, N, H, W) images, (C, kh*kw, ...) patches.
    c, n, h, w = 2, 3, 7, 8
    oh, ow = ((h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1)
    shape, patch_shape = ((c, h, w, n), (c, kernel[0] * kernel[1], oh, ow, n)) if first == 1 else \
        ((c, n, h, w), (c, kernel[0] * kernel[1], n, oh, ow))
    x = backend.asarray(rng.standard_normal(shape), dtype=_dtype(backend))
    cols = backend.asarray(rng.standard_normal(patch_shape), dtype=_dtype(backend))
    xp = backend.xp

    def run():
        view = fast.sliding_windows(x, kernel, stride, first)
        if view is None:  # portable: one slice per offset, stacked after C
            patches = xp.stack(windows(x, kernel, stride, (oh, ow), first), axis=1)
        else:
            patches = xp.reshape(xp.permute_dims(view, (0, 4, 5, 1, 2, 3)), patch_shape)
        back = fast.col2im(cols, shape, kernel, stride, first)
        if back is None:
            back = scatter_windows([cols[:, k, ...] for k in range(cols.shape[1])], shape,
                                   kernel, stride, first)
        return patches, back

    _assert_same(backend, run)


LAYERS = {
    "relu": (portnn.ReLU, (4, 5)),
    "conv_pad": (lambda: portnn.Conv2D(2, 3, 3, padding=1), (2, 2, 6, 5)),
    "conv_stride": (lambda: portnn.Conv2D(2, 3, (3, 2), stride=(2, 1), padding=(1, 0)), (2, 2, 7, 6)),
    "maxpool": (lambda: portnn.MaxPool2D(2), (2, 3, 5, 7)),
    "maxpool_ties": (lambda: portnn.MaxPool2D(2), None),
    "maxpool_overlap": (lambda: portnn.MaxPool2D(3, 2), (2, 3, 7, 7)),
    "avgpool": (lambda: portnn.AvgPool2D((2, 3)), (2, 3, 5, 7)),
    # A channels-first array seen as NCHW, as Conv2D returns: the gradient follows its layout.
    "maxpool_transposed": (lambda: portnn.MaxPool2D(2), (3, 2, 4, 6)),
    "avgpool_transposed": (lambda: portnn.AvgPool2D(2), (3, 2, 5, 6)),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_layers_same_on_fast_and_portable_paths(backend, name):
    make, shape = LAYERS[name]
    if shape is None:  # ReLU outputs: whole windows of equal values (the first maximum wins)
        host = np.maximum(rng.standard_normal((2, 3, 4, 6)), 0.0)
        host[:, :, :2, :2] = 0.0
    else:
        host = rng.standard_normal(shape)
    x = backend.asarray(host, dtype=_dtype(backend))
    if name.endswith("_transposed"):
        x = backend.xp.permute_dims(x, (1, 0, 2, 3))
    portnn.seed(0)
    layer = make()
    if layer.params:
        layer.to(backend, dtype=_dtype(backend))

    def run():
        y = layer.forward(x, training=True)
        dy = backend.xp.reshape(backend.asarray(np.arange(np.prod(y.shape)) % 7 - 3.0,
                                                dtype=_dtype(backend)), y.shape)
        return (y, layer.backward(dy), *layer.grads.values())

    _assert_same(backend, run)


LOSSES = {
    "crossentropy_labels": (portnn.CrossEntropy, lambda: rng.integers(0, 4, 6)),
    "crossentropy_soft": (portnn.CrossEntropy, lambda: rng.dirichlet(np.ones(4), 6)),
    "bce": (portnn.BinaryCrossEntropy, lambda: (rng.uniform(size=(6, 4)) > 0.5) * 1.0),
    "bce_logits": (lambda: portnn.BinaryCrossEntropy(from_logits=True),
                   lambda: (rng.uniform(size=(6, 4)) > 0.5) * 1.0),
    "mse": (portnn.MSE, lambda: rng.standard_normal((6, 4))),
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_losses_same_on_fast_and_portable_paths(backend, name):
    make, targets = LOSSES[name]
    dt = _dtype(backend)
    host_pred = rng.uniform(0.01, 0.99, (6, 4)) if name == "bce" else rng.standard_normal((6, 4)) * 3
    host_pred[0, 0] = 0.0 if name == "bce" else host_pred[0, 0]  # a clamped log
    pred = backend.asarray(host_pred, dtype=dt)
    host_true = targets()
    true = backend.asarray(host_true, dtype=dt if host_true.dtype.kind == "f" else None)
    loss = make()

    def run():
        value = loss(pred, true)
        hits = loss.correct(pred, true)
        return (value, loss.backward()) + (() if hits is None else (hits,))

    _assert_same(backend, run)


OPTIMIZERS = {
    "sgd": lambda: portnn.SGD(0.1),
    "sgd_momentum_l2": lambda: portnn.SGD(0.1, momentum=0.9, weight_decay=0.1),
    "sgd_nesterov": lambda: portnn.SGD(0.1, momentum=0.8, nesterov=True),
    "adam_l2": lambda: portnn.Adam(0.05, betas=(0.8, 0.95), weight_decay=0.1),
    "adamw": lambda: portnn.AdamW(0.05, weight_decay=0.1),
    "rmsprop_l2": lambda: portnn.RMSProp(0.05, alpha=0.9, weight_decay=0.1),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_foreach_equals_portable(backend, name):
    """Each formula on the backend's foreach ops (torch's ``_foreach_*``) against the portable list loops."""
    dt = _dtype(backend)
    grads = [{"weight": rng.standard_normal((3, 2)), "bias": rng.standard_normal(2)} for _ in range(4)]

    def run():
        portnn.seed(0)
        layers = [portnn.Dense(3, 2, dtype=dt), portnn.ReLU(), portnn.Dense(2, 2, bias=False, dtype=dt)]
        optimizer = OPTIMIZERS[name]()
        seen = []
        for g in grads:
            layers[0].grads = {k: backend.asarray(v, dtype=dt) for k, v in g.items()}
            layers[2].grads = {"weight": backend.asarray(g["weight"][:2], dtype=dt)}
            optimizer.step(layers)
            seen += [portnn.to_numpy(p).copy() for p in (*layers[0].params.values(),
                                                          layers[2].params["weight"])]
        return tuple(seen)

    _assert_same(backend, run, rtol=1e-10 if dt == "float64" else 1e-5)

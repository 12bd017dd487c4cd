"""Conv2D, pooling, Flatten and Reshape: finite differences, PyTorch references, meta shapes."""

import numpy as np
import pytest

import portnn
from conftest import assert_close, has_float64

# (in_channels, out_channels, kernel_size, stride, padding, (height, width)): small on purpose.
CONV_CASES = [
    (1, 1, 1, 1, 0, (3, 4)),
    (2, 2, 3, 1, 1, (4, 5)),
    (2, 2, 3, 2, 0, (5, 6)),
    (1, 2, 2, 2, 2, (3, 4)),
    (1, 1, 5, 1, 2, (5, 4)),
    (2, 1, 4, 2, 1, (6, 5)),
    (1, 2, (2, 3), (2, 1), (1, 2), (4, 3)),
    (2, 1, (3, 1), (1, 2), (0, 1), (5, 4)),
]
CONV_IDS = [f"k{c[2]}-s{c[3]}-p{c[4]}-{c[5][0]}x{c[5][1]}" for c in CONV_CASES]

# (layer class name, kernel_size, stride, (height, width))
POOL_CASES = [
    (2, None, (4, 6)),
    (2, None, (5, 7)),  # odd sizes: the last row and column are dropped, as in PyTorch
    (3, 2, (7, 5)),
    ((2, 3), (1, 2), (4, 7)),
    ((2, 3), None, (5, 7)),  # non-square tiles, a leftover row and column
    (3, 1, (4, 4)),
]
POOL_IDS = [f"k{k}-s{s}-{h}x{w}" for k, s, (h, w) in POOL_CASES]
# 132 offsets: the max-pool's offset index outgrows int8 (too slow to gradcheck everywhere).
TORCH_POOL_CASES = [*POOL_CASES, ((12, 11), 1, (12, 13))]
TORCH_POOL_IDS = [*POOL_IDS, "k12x11-s1-12x13"]
POOLS = {"max": (portnn.MaxPool2D, "max_pool2d"), "avg": (portnn.AvgPool2D, "avg_pool2d")}


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _dt(be):
    return "float64" if has_float64(be) else "float32"


def _tol(dt):
    return 1e-10 if dt == "float64" else 1e-4


def _conv(case):
    cin, cout, k, s, p, _ = case
    return portnn.Conv2D(cin, cout, k, stride=s, padding=p)


# --------------------------------------------------------------------------- Conv2D


@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv_gradcheck(backend, case):
    layer = _conv(case)
    layer.params["bias"] = backend.asarray(_x((case[1],), seed=2))
    portnn.gradcheck(layer, _x((1, case[0], *case[5])))


def test_conv_without_bias_gradcheck(backend):
    layer = portnn.Conv2D(2, 1, 2, padding=1, bias=False)
    portnn.gradcheck(layer, _x((1, 2, 3, 2)))
    assert set(layer.grads) == set(layer.params) == {"weight"}


@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv_matches_torch(backend, torch, case):
    dt = _dt(backend)
    cin, cout, k, s, p, hw = case
    layer = _conv(case).to(backend, dtype=dt)
    layer.params["bias"] = backend.asarray(_x((cout,), seed=2), dtype=dt)
    x = _x((3, cin, *hw))
    y = layer.forward(backend.asarray(x, dtype=dt))
    dy = _x(tuple(y.shape), seed=1)
    dx = layer.backward(backend.asarray(dy, dtype=dt))

    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(portnn.to_numpy(layer.params["weight"]).astype(np.float64), requires_grad=True)
    tb = torch.tensor(_x((cout,), seed=2), requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p)
    ty.backward(torch.tensor(dy))
    tol = _tol(dt)
    assert_close(y, ty.detach().numpy(), rtol=tol, atol=tol)
    assert_close(dx, tx.grad.numpy(), rtol=tol, atol=tol)
    assert_close(layer.grads["weight"], tw.grad.numpy(), rtol=tol, atol=tol)
    assert_close(layer.grads["bias"], tb.grad.numpy(), rtol=tol, atol=tol)


def test_conv_backward_params_matches_backward(backend):
    layer = portnn.Conv2D(2, 3, 3, stride=2, padding=1)
    x = backend.asarray(_x((2, 2, 5, 4)), dtype="float32")
    dy = backend.asarray(_x((2, 3, 3, 2), seed=1), dtype="float32")
    layer.forward(x, training=True)
    layer.backward(dy)
    full = {k: portnn.to_numpy(g) for k, g in layer.grads.items()}
    layer.grads.clear()
    layer.backward_params(dy)
    for key, grad in full.items():
        assert_close(layer.grads[key], grad, rtol=0, atol=0)


def test_conv_weight_layout_init_and_config(backend):
    layer = portnn.Conv2D(3, 8, (3, 2), stride=2, padding=(1, 0))
    w = portnn.to_numpy(layer.params["weight"])
    assert w.shape == (8, 3, 3, 2) and w.dtype == np.float32
    assert np.all(np.abs(w) <= np.sqrt(6 / (3 * 3 * 2))) and w.std() > 0
    assert_close(layer.params["bias"], np.zeros(8))
    rebuilt = portnn.Conv2D(**{**layer.config(), "init": "zeros"})
    assert rebuilt.config() == {**layer.config(), "init": "zeros"}


@pytest.mark.parametrize("shape, match", [
    ((2, 3, 5), r"Conv2D\(3, 4\) expects input of shape \(batch, 3, height, width\)"),
    ((2, 2, 5, 5), r"Conv2D\(3, 4\) expects input of shape \(batch, 3, height, width\)"),
    ((2, 3, 2, 5), r"Conv2D\(3, 4\).*smaller than the kernel"),
])
def test_conv_rejects_bad_input(backend, shape, match):
    layer = portnn.Conv2D(3, 4, 3)
    with pytest.raises(ValueError, match=match):
        layer.forward(backend.asarray(np.ones(shape, np.float32)))


@pytest.mark.parametrize("kwargs, name", [
    ({"kernel_size": 0}, "kernel_size"), ({"kernel_size": (3, 3, 3)}, "kernel_size"),
    ({"kernel_size": 3, "stride": 0}, "stride"), ({"kernel_size": 3, "padding": -1}, "padding"),
])
def test_conv_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=rf"Conv2D\(1, 2\): {name} must be"):
        portnn.Conv2D(1, 2, **kwargs)


# --------------------------------------------------------------------------- pooling


@pytest.mark.parametrize("kind", sorted(POOLS))
@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_pool_gradcheck(backend, kind, case):
    kernel, stride, hw = case
    portnn.gradcheck(POOLS[kind][0](kernel, stride), _x((1, 2, *hw)))


@pytest.mark.parametrize("kind", sorted(POOLS))
@pytest.mark.parametrize("case", TORCH_POOL_CASES, ids=TORCH_POOL_IDS)
def test_pool_matches_torch(backend, torch, kind, case):
    dt = _dt(backend)
    kernel, stride, hw = case
    make, ref = POOLS[kind]
    # Small integers: many windows hold several equal maxima, which must send the gradient
    # to the first of them (row-major), as PyTorch does.
    x = np.random.default_rng(0).integers(0, 3, (2, 3, *hw)).astype(np.float64)
    layer = make(kernel, stride)
    y = layer.forward(backend.asarray(x, dtype=dt))
    dy = _x(tuple(y.shape), seed=1)
    dx = layer.backward(backend.asarray(dy, dtype=dt))
    tx = torch.tensor(x, requires_grad=True)
    ty = getattr(torch.nn.functional, ref)(tx, kernel, stride)
    ty.backward(torch.tensor(dy))
    tol = _tol(dt)
    assert_close(y, ty.detach().numpy(), rtol=tol, atol=tol)
    assert_close(dx, tx.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", sorted(POOLS))
def test_pool_rejects_bad_input(backend, kind):
    layer = POOLS[kind][0](3)
    name = f"{POOLS[kind][0].__name__}\\(3\\)"
    with pytest.raises(ValueError, match=rf"{name} expects input of shape \(batch, channels"):
        layer.forward(backend.asarray(np.ones((2, 6, 6), np.float32)))
    with pytest.raises(ValueError, match=rf"{name}.*smaller than the kernel"):
        layer.forward(backend.asarray(np.ones((1, 1, 2, 6), np.float32)))
    with pytest.raises(ValueError, match=rf"{name}: stride must be"):
        POOLS[kind][0](3, stride=0)


# --------------------------------------------------------------------------- Flatten / Reshape


def test_flatten_and_reshape_gradcheck(backend):
    portnn.gradcheck(portnn.Flatten(), _x((2, 3, 2, 2)))
    portnn.gradcheck(portnn.Reshape((2, 3)), _x((2, 6)))


def test_flatten_reshape_round_trip(backend):
    x = backend.asarray(_x((4, 12)), dtype="float32")
    to_image, flatten = portnn.Reshape((3, 2, 2)), portnn.Flatten()
    image = to_image.forward(x)
    assert tuple(image.shape) == (4, 3, 2, 2)
    assert_close(image, portnn.to_numpy(x).reshape(4, 3, 2, 2))
    flat = flatten.forward(image)
    assert_close(flat, portnn.to_numpy(x))
    dy = flatten.backward(flat)
    assert tuple(dy.shape) == (4, 3, 2, 2)
    assert_close(to_image.backward(dy), portnn.to_numpy(x))
    assert tuple(portnn.Reshape((-1, 2)).forward(x).shape) == (4, 6, 2)


def test_reshape_rejects_bad_size(backend):
    with pytest.raises(ValueError, match=r"Reshape\(\(5, 2\)\) cannot reshape samples of shape \(12,\)"):
        portnn.Reshape((5, 2)).forward(backend.asarray(np.ones((4, 12), np.float32)))
    with pytest.raises(ValueError, match=r"Reshape\(\(-1, 5\)\) cannot reshape samples"):
        portnn.Reshape((-1, 5)).forward(backend.asarray(np.ones((4, 12), np.float32)))


# --------------------------------------------------------------------------- devices and training

LAYERS = {
    "conv": (lambda: portnn.Conv2D(2, 3, 3, stride=2, padding=1), (2, 3, 3, 4)),
    "maxpool": (lambda: portnn.MaxPool2D(2), (2, 2, 3, 4)),
    "maxpool_overlap": (lambda: portnn.MaxPool2D(3, 1), (2, 2, 4, 6)),
    "avgpool": (lambda: portnn.AvgPool2D(2, 1), (2, 2, 5, 7)),
    "flatten": (portnn.Flatten, (2, 96)),
    "reshape": (lambda: portnn.Reshape((4, 6)), (2, 4, 6)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_forward_backward_stay_on_device(any_device, name):
    make, out_shape = LAYERS[name]
    layer = make()
    x = any_device.asarray(np.ones((2, 2, 6, 8) if name != "reshape" else (2, 24), np.float32))
    y = layer.forward(x, training=True)
    dx = layer.backward(y)
    assert tuple(y.shape) == out_shape and tuple(dx.shape) == tuple(x.shape)
    for arr in (y, dx, *layer.grads.values()):
        assert portnn.backends.backend_of(arr) == any_device
        assert str(arr.dtype).endswith("float32")


def _toy_images(be, n=32):
    # Class = which half (left or right) of an 8x8 image is brighter.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, n)
    x = rng.standard_normal((n, 1, 8, 8)) * 0.5
    x[labels == 0, :, :, :4] += 1.0
    x[labels == 1, :, :, 4:] += 1.0
    return be.asarray(x, dtype="float32"), be.asarray(labels)


def test_small_cnn_loss_decreases(backend):
    x, labels = _toy_images(backend)
    model = portnn.Sequential([
        portnn.Conv2D(1, 4, 3, padding=1), portnn.ReLU(), portnn.MaxPool2D(2),
        portnn.Conv2D(4, 4, 3, stride=2, padding=1), portnn.ReLU(),
        portnn.Flatten(), portnn.Dense(4 * 2 * 2, 2),
    ], loss=portnn.CrossEntropy(), optimizer=portnn.SGD(0.1, momentum=0.9))
    losses = [float(portnn.to_numpy(model.train_step(x, labels)[0])) for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0], losses


def test_numpy_cnn_keeps_one_memory_layout():
    """On NumPy a Conv2D output is (C, H, W, N) memory, and every array that meets it in an
    element-wise pass (ReLU, pooling, dropout masks, gradients back through Flatten) has that
    layout too: a pass over two layouts runs several times slower (not a timing, the cause)."""
    x = np.random.default_rng(0).standard_normal((4, 2, 8, 6)).astype(np.float32)
    conv, relu, pool, drop, flat = (portnn.Conv2D(2, 3, 3, padding=1), portnn.ReLU(),
                                    portnn.MaxPool2D(2), portnn.Dropout(0.5), portnn.Flatten())
    y = conv.forward(x)
    assert np.transpose(y, (1, 2, 3, 0)).flags.c_contiguous
    r = relu.forward(y)
    assert r.strides == y.strides
    p = pool.forward(r)
    d = drop.forward(p, training=True)
    assert drop.mask.strides == p.strides
    flat.forward(d)
    back = flat.backward(np.ones((4, 3 * 4 * 3), np.float32))
    assert back.strides == d.strides
    dr = pool.backward(drop.backward(back))
    assert dr.strides == r.strides
    assert relu.backward(dr).strides == y.strides

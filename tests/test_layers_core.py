"""Dense and activations: finite-difference gradients, PyTorch references, meta shapes."""

import numpy as np
import pytest

import portnn
from conftest import assert_close, has_float64

ACTIVATIONS = {
    "relu": (portnn.ReLU, lambda F, x: F.relu(x)),
    "leaky_relu": (lambda: portnn.LeakyReLU(0.1), lambda F, x: F.leaky_relu(x, 0.1)),
    "sigmoid": (portnn.Sigmoid, lambda F, x: F.sigmoid(x)),
    "tanh": (portnn.Tanh, lambda F, x: F.tanh(x)),
    "softmax": (portnn.Softmax, lambda F, x: F.softmax(x, dim=-1)),
    "softmax_axis0": (lambda: portnn.Softmax(axis=0), lambda F, x: F.softmax(x, dim=0)),
}


def _x(shape, seed=0):
    # Keep values away from ReLU's kink so central differences are exact.
    x = np.random.default_rng(seed).standard_normal(shape)
    return np.where(np.abs(x) < 0.05, 0.3, x)


def _ref_dtype(be):
    return "float64" if has_float64(be) else "float32"


@pytest.mark.parametrize("bias", [True, False])
def test_dense_gradcheck(backend, bias):
    layer = portnn.Dense(3, 2, bias=bias)
    portnn.gradcheck(layer, _x((4, 3)))
    assert set(layer.grads) == set(layer.params)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_gradcheck(backend, name):
    portnn.gradcheck(ACTIVATIONS[name][0](), _x((3, 4)))


def test_dense_matches_torch(backend, torch):
    dt = _ref_dtype(backend)
    layer = portnn.Dense(5, 3).to(backend, dtype=dt)
    layer.params["bias"] = backend.asarray(np.array([0.5, -1.0, 2.0]), dtype=dt)
    x, dy = _x((4, 5)), _x((4, 3), seed=1)
    y = layer.forward(backend.asarray(x, dtype=dt))
    dx = layer.backward(backend.asarray(dy, dtype=dt))

    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(portnn.to_numpy(layer.params["weight"]).astype(np.float64), requires_grad=True)
    tb = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    ty = torch.nn.functional.linear(tx, tw.T, tb)
    ty.backward(torch.tensor(dy))
    tol = 1e-10 if dt == "float64" else 1e-5
    assert_close(y, ty.detach().numpy(), rtol=tol, atol=tol)
    assert_close(dx, tx.grad.numpy(), rtol=tol, atol=tol)
    assert_close(layer.grads["weight"], tw.grad.numpy(), rtol=tol, atol=tol)
    assert_close(layer.grads["bias"], tb.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_matches_torch(backend, torch, name):
    dt = _ref_dtype(backend)
    make, ref = ACTIVATIONS[name]
    layer = make()
    x, dy = _x((3, 4)) * 3, _x((3, 4), seed=1)
    y = layer.forward(backend.asarray(x, dtype=dt))
    dx = layer.backward(backend.asarray(dy, dtype=dt))
    tx = torch.tensor(x, requires_grad=True)
    ty = ref(torch.nn.functional, tx)
    ty.backward(torch.tensor(dy))
    tol = 1e-10 if dt == "float64" else 1e-5
    assert_close(y, ty.detach().numpy(), rtol=tol, atol=tol)
    assert_close(dx, tx.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_forward_backward_stay_on_device(any_device, name):
    layer = ACTIVATIONS[name][0]()
    x = any_device.asarray(np.ones((2, 3), np.float32))
    y = layer.forward(x, training=True)
    dx = layer.backward(y)
    assert tuple(dx.shape) == (2, 3)
    assert portnn.backends.backend_of(dx) == any_device


def test_dense_on_device(any_device):
    layer = portnn.Dense(3, 2)
    y = layer.forward(any_device.asarray(np.ones((4, 3), np.float32)))
    dx = layer.backward(y)
    assert tuple(y.shape) == (4, 2) and tuple(dx.shape) == (4, 3)
    for arr in (y, dx, layer.grads["weight"], layer.grads["bias"]):
        assert portnn.backends.backend_of(arr) == any_device
    assert str(y.dtype).endswith("float32")


def test_sigmoid_is_stable_for_huge_inputs(backend):
    y = portnn.Sigmoid().forward(backend.asarray(np.array([-1e4, 0.0, 1e4], np.float32)))
    assert_close(y, [0.0, 0.5, 1.0])


def test_softmax_is_stable_for_huge_inputs(backend):
    y = portnn.Softmax().forward(backend.asarray(np.array([[1e4, 1e4, -1e4]], np.float32)))
    assert_close(y, [[0.5, 0.5, 0.0]])


@pytest.mark.parametrize("shape", [(4, 5), (4,), (2, 3, 3)])
def test_dense_rejects_bad_input_naming_the_layer(backend, shape):
    layer = portnn.Dense(3, 2)
    with pytest.raises(ValueError, match=r"Dense\(3, 2\).*\(batch, 3\)"):
        layer.forward(backend.asarray(np.ones(shape, np.float32)))


def test_dense_weight_layout_and_default_init(backend):
    layer = portnn.Dense(4, 6)
    w = portnn.to_numpy(layer.params["weight"])
    assert w.shape == (4, 6) and w.dtype == np.float32
    assert np.all(np.abs(w) <= np.sqrt(6 / 10)) and w.std() > 0
    assert_close(layer.params["bias"], np.zeros(6))


def test_same_seed_gives_identical_weights_on_every_backend(backend):
    portnn.seed(123)
    here = portnn.to_numpy(portnn.Dense(7, 5).params["weight"])
    portnn.seed(123)
    with portnn.use_backend("numpy"):
        reference = portnn.Dense(7, 5).params["weight"]
    np.testing.assert_array_equal(here, reference)


def test_dense_backward_params_fills_the_same_grads(backend):
    layer = portnn.Dense(3, 2)
    x = backend.asarray(_x((4, 3)))
    dy = backend.asarray(_x((4, 2), seed=1))
    layer.forward(x)
    layer.backward(dy)
    full = {k: portnn.to_numpy(g) for k, g in layer.grads.items()}
    layer.grads.clear()
    assert layer.backward_params(dy) is None
    for key, g in full.items():
        assert_close(layer.grads[key], g, rtol=0, atol=0)

import numpy as np

import portnn
from conftest import assert_close


def test_dense_gradcheck(backend):
    layer = portnn.Dense(3, 2)
    layer.params["bias"] = backend.asarray(np.array([0.1, -0.2], np.float32))
    portnn.gradcheck(layer, np.random.default_rng(0).standard_normal((4, 3)))


def test_dense_forward_matches_numpy(backend):
    layer = portnn.Dense(3, 2)
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    w = portnn.to_numpy(layer.params["weight"])
    assert_close(layer.forward(backend.asarray(x)), x @ w, rtol=1e-5)


def test_meta_forward_backward(any_device):
    layer = portnn.Dense(3, 2)
    y = layer.forward(any_device.asarray(np.ones((4, 3), np.float32)))
    dx = layer.backward(y)
    assert tuple(dx.shape) == (4, 3)
    assert portnn.backends.backend_of(dx) == any_device

"""BatchNorm and Dropout: finite differences, PyTorch references, mask statistics, meta shapes."""

import numpy as np
import pytest

import portnn
from conftest import assert_close, has_float64

BN_SHAPES = {"2d": (6, 3), "4d": (3, 2, 3, 2)}


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _dt(be):
    return "float64" if has_float64(be) else "float32"


# --------------------------------------------------------------------------- BatchNorm


def _bn(be, channels, dt):
    layer = portnn.BatchNorm(channels, momentum=0.2, eps=1e-3).to(be, dtype=dt)
    layer.params["weight"] = be.asarray(1.0 + 0.5 * _x((channels,), seed=3), dtype=dt)
    layer.params["bias"] = be.asarray(_x((channels,), seed=4), dtype=dt)
    return layer


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("kind", sorted(BN_SHAPES))
def test_batchnorm_gradcheck(backend, kind, training):
    shape = BN_SHAPES[kind]
    layer = _bn(backend, shape[1], _dt(backend))
    layer.buffers["running_mean"] = backend.asarray(_x((shape[1],), seed=5), dtype=_dt(backend))
    layer.buffers["running_var"] = backend.asarray(1.0 + _x((shape[1],), seed=6) ** 2, dtype=_dt(backend))
    portnn.gradcheck(layer, _x(shape) * 2 + 1, training=training)


@pytest.mark.parametrize("kind", sorted(BN_SHAPES))
def test_batchnorm_matches_torch(backend, torch, kind):
    dt = _dt(backend)
    shape = BN_SHAPES[kind]
    channels = shape[1]
    layer = _bn(backend, channels, dt)
    tw = torch.tensor(portnn.to_numpy(layer.params["weight"]).astype(np.float64), requires_grad=True)
    tb = torch.tensor(portnn.to_numpy(layer.params["bias"]).astype(np.float64), requires_grad=True)
    t_mean, t_var = torch.zeros(channels, dtype=torch.float64), torch.ones(channels, dtype=torch.float64)
    F = torch.nn.functional
    tol = 1e-10 if dt == "float64" else 1e-4
    for step in range(2):  # two training steps: the running statistics accumulate
        x, dy = _x(shape, seed=step) * 2 + 1, _x(shape, seed=10 + step)
        y = layer.forward(backend.asarray(x, dtype=dt), training=True)
        dx = layer.backward(backend.asarray(dy, dtype=dt))
        tx = torch.tensor(x, requires_grad=True)
        tw.grad = tb.grad = None
        ty = F.batch_norm(tx, t_mean, t_var, tw, tb, training=True, momentum=0.2, eps=1e-3)
        ty.backward(torch.tensor(dy))
        assert_close(y, ty.detach().numpy(), rtol=tol, atol=tol)
        assert_close(dx, tx.grad.numpy(), rtol=tol, atol=tol)
        assert_close(layer.grads["weight"], tw.grad.numpy(), rtol=tol, atol=tol)
        assert_close(layer.grads["bias"], tb.grad.numpy(), rtol=tol, atol=tol)
        assert_close(layer.buffers["running_mean"], t_mean.numpy(), rtol=tol, atol=tol)
        assert_close(layer.buffers["running_var"], t_var.numpy(), rtol=tol, atol=tol)

    x, dy = _x(shape, seed=7), _x(shape, seed=8)
    y = layer.forward(backend.asarray(x, dtype=dt), training=False)
    dx = layer.backward(backend.asarray(dy, dtype=dt))
    tx = torch.tensor(x, requires_grad=True)
    ty = F.batch_norm(tx, t_mean, t_var, tw, tb, training=False, eps=1e-3)
    ty.backward(torch.tensor(dy))
    assert_close(y, ty.detach().numpy(), rtol=tol, atol=tol)
    assert_close(dx, tx.grad.numpy(), rtol=tol, atol=tol)


def test_batchnorm_eval_does_not_touch_running_stats(backend):
    layer = portnn.BatchNorm(3)
    layer.forward(backend.asarray(_x((4, 3)) + 5, dtype="float32"), training=False)
    assert_close(layer.buffers["running_mean"], np.zeros(3))
    assert_close(layer.buffers["running_var"], np.ones(3))
    assert set(layer.params) == {"weight", "bias"}


@pytest.mark.parametrize("shape, match", [
    ((4, 2), r"BatchNorm\(3\) expects input of shape \(batch, 3\) or \(batch, 3, height, width\)"),
    ((4, 3, 2), r"BatchNorm\(3\) expects input of shape"),
    ((1, 3), r"BatchNorm\(3\): training needs more than one value per channel"),
])
def test_batchnorm_rejects_bad_input(backend, shape, match):
    with pytest.raises(ValueError, match=match):
        portnn.BatchNorm(3).forward(backend.asarray(np.ones(shape, np.float32)), training=True)


# --------------------------------------------------------------------------- Dropout


def test_dropout_is_identity_in_eval(backend):
    layer = portnn.Dropout(0.5)
    x = backend.asarray(_x((3, 4)), dtype="float32")
    assert_close(layer.forward(x), portnn.to_numpy(x), rtol=0, atol=0)
    assert_close(layer.backward(x), portnn.to_numpy(x), rtol=0, atol=0)
    portnn.gradcheck(layer, _x((3, 4)), training=False)


def test_dropout_mask_statistics_and_backward(backend):
    p = 0.3
    layer = portnn.Dropout(p)
    x = backend.asarray(np.full((200, 100), 2.0), dtype="float32")
    y = portnn.to_numpy(layer.forward(x, training=True))
    kept = y != 0
    assert abs(1 - kept.mean() - p) < 0.02  # 20,000 draws: the standard error is 0.003
    np.testing.assert_allclose(y[kept], 2.0 / (1 - p), rtol=1e-6)
    dy = _x((200, 100), seed=1)
    dx = portnn.to_numpy(layer.backward(backend.asarray(dy, dtype="float32")))
    np.testing.assert_allclose(dx, np.where(kept, dy / (1 - p), 0.0), rtol=1e-5, atol=1e-6)


def test_dropout_is_reproducible_with_a_seed(backend):
    x = backend.asarray(np.ones((8, 16)), dtype="float32")
    draws = []
    for _ in range(2):
        portnn.seed(7)
        layer = portnn.Dropout(0.5)
        draws.append([portnn.to_numpy(layer.forward(x, training=True)) for _ in range(2)])
    np.testing.assert_array_equal(draws[0][0], draws[1][0])
    np.testing.assert_array_equal(draws[0][1], draws[1][1])
    assert not np.array_equal(draws[0][0], draws[0][1])  # a fresh mask every step


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5])
def test_dropout_rejects_bad_p(p):
    with pytest.raises(ValueError, match=r"Dropout: p must satisfy 0 <= p < 1"):
        portnn.Dropout(p)


# --------------------------------------------------------------------------- devices and training


@pytest.mark.parametrize("name", ["batchnorm2d", "batchnorm4d", "batchnorm_eval", "dropout"])
def test_forward_backward_stay_on_device(any_device, name):
    shape = (4, 3) if name == "batchnorm2d" else (2, 3, 4, 5)
    layer = portnn.Dropout(0.5) if name == "dropout" else portnn.BatchNorm(3)
    x = any_device.asarray(np.ones(shape, np.float32))
    y = layer.forward(x, training=name != "batchnorm_eval")
    dx = layer.backward(y)
    assert tuple(y.shape) == tuple(dx.shape) == shape
    for arr in (y, dx, *layer.grads.values(), *layer.buffers.values()):
        assert portnn.backends.backend_of(arr) == any_device
        assert str(arr.dtype).endswith("float32")


def test_cnn_with_batchnorm_and_dropout_learns(backend):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 32)
    x = rng.standard_normal((32, 1, 6, 6)) * 0.5
    x[labels == 1, :, :3] += 1.0  # class 1: the top half is brighter
    x, labels = backend.asarray(x, dtype="float32"), backend.asarray(labels)
    model = portnn.Sequential([
        portnn.Conv2D(1, 4, 3, padding=1), portnn.BatchNorm(4), portnn.ReLU(), portnn.AvgPool2D(2),
        portnn.Flatten(), portnn.Dropout(0.1), portnn.Dense(36, 2),
    ], loss=portnn.CrossEntropy(), optimizer=portnn.SGD(0.1, momentum=0.9))

    def eval_loss():
        return float(portnn.to_numpy(model.loss(model.forward(x), labels)))

    before = eval_loss()
    for _ in range(15):
        model.train_step(x, labels)
    assert eval_loss() < 0.5 * before

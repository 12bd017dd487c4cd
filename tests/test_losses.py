"""Losses: finite-difference gradients and PyTorch references on every backend."""

import numpy as np
import pytest

import portnn
from conftest import assert_close, has_float64

rng = np.random.default_rng(0)
LOGITS = rng.standard_normal((5, 4)) * 2
LABELS = np.array([0, 3, 1, 1, 2])
PROBS = rng.uniform(0.05, 0.95, (5, 3))
TARGETS01 = (rng.uniform(size=(5, 3)) > 0.5).astype(np.float64)


def _cases(F, torch):
    t = torch.tensor
    return {
        "mse": (portnn.MSE(), LOGITS, rng.standard_normal((5, 4)),
                lambda p, y: F.mse_loss(p, t(y))),
        "bce": (portnn.BinaryCrossEntropy(), PROBS, TARGETS01,
                lambda p, y: F.binary_cross_entropy(p, t(y))),
        "bce_logits": (portnn.BinaryCrossEntropy(from_logits=True), LOGITS[:, :3], TARGETS01,
                       lambda p, y: F.binary_cross_entropy_with_logits(p, t(y))),
        "ce_labels": (portnn.CrossEntropy(), LOGITS, LABELS,
                      lambda p, y: F.cross_entropy(p, t(y))),
        "ce_onehot": (portnn.CrossEntropy(), LOGITS, np.eye(4)[LABELS],
                      lambda p, y: F.cross_entropy(p, t(y))),
        "ce_soft": (portnn.CrossEntropy(), LOGITS, np.full((5, 4), 0.25),
                    lambda p, y: F.cross_entropy(p, t(y))),
    }


NAMES = ["mse", "bce", "bce_logits", "ce_labels", "ce_onehot", "ce_soft"]


class _NoTorch:
    tensor = staticmethod(lambda a: a)


@pytest.mark.parametrize("name", NAMES)
def test_loss_gradcheck(backend, name):
    loss, pred, true, _ = _cases(None, _NoTorch)[name]
    portnn.gradcheck_loss(loss, pred, true)


@pytest.mark.parametrize("name", NAMES)
def test_loss_matches_torch(backend, torch, name):
    loss, pred, true, ref = _cases(torch.nn.functional, torch)[name]
    dt = "float64" if has_float64(backend) else "float32"
    value = loss(backend.asarray(pred, dtype=dt),
                 backend.asarray(true, dtype=dt if true.dtype.kind == "f" else None))
    grad = loss.backward()
    tp = torch.tensor(pred, requires_grad=True)
    tv = ref(tp, true)
    tv.backward()
    tol = 1e-10 if dt == "float64" else 1e-5
    assert tuple(value.shape) == ()
    assert_close(value, tv.item(), rtol=tol, atol=tol)
    assert_close(grad, tp.grad.numpy(), rtol=tol, atol=tol)


def test_crossentropy_is_stable_for_huge_logits(backend, torch):
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 5e3, 0.0]], np.float32)
    loss = portnn.CrossEntropy()
    value = loss(backend.asarray(logits), backend.asarray(np.array([1, 1])))
    ref = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor([1, 1]))
    assert np.isfinite(float(value))
    assert_close(value, ref.item(), rtol=1e-5)
    assert np.all(np.isfinite(portnn.to_numpy(loss.backward())))


def test_bce_from_logits_is_stable(backend):
    loss = portnn.BinaryCrossEntropy(from_logits=True)
    z = backend.asarray(np.array([[1e4], [-1e4]], np.float32))
    value = loss(z, backend.asarray(np.array([[0.0], [1.0]], np.float32)))
    assert_close(value, 1e4, rtol=1e-6)


def test_bce_clamps_log_like_torch(backend):
    value = portnn.BinaryCrossEntropy()(backend.asarray(np.array([[0.0]], np.float32)),
                                        backend.asarray(np.array([[1.0]], np.float32)))
    assert_close(value, 100.0)


@pytest.mark.parametrize("loss", [portnn.MSE(), portnn.BinaryCrossEntropy()])
def test_shape_mismatch_is_an_error_not_a_broadcast(backend, loss):
    with pytest.raises(ValueError, match=r"y_pred has shape \(4, 1\) but y_true has shape \(4,\)"):
        loss(backend.asarray(np.full((4, 1), 0.5, np.float32)), backend.asarray(np.ones(4, np.float32)))


def test_crossentropy_rejects_non_2d_logits(backend):
    with pytest.raises(ValueError, match="CrossEntropy expects logits of shape"):
        portnn.CrossEntropy()(backend.asarray(np.ones(4, np.float32)), backend.asarray(np.ones(4)))


def test_accuracy_counts(backend):
    ce = portnn.CrossEntropy()
    logits = backend.asarray(np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]], np.float32))
    assert float(ce.correct(logits, backend.asarray(np.array([0, 1, 1])))) == 2.0
    bce = portnn.BinaryCrossEntropy()
    p = backend.asarray(np.array([[0.9], [0.2], [0.6]], np.float32))
    assert float(bce.correct(p, backend.asarray(np.array([[1.0], [0.0], [0.0]], np.float32)))) == 2.0
    assert portnn.MSE().correct(p, p) is None


def test_loss_names():
    assert isinstance(portnn.losses.get("mse"), portnn.MSE)
    assert isinstance(portnn.losses.get("binary_crossentropy"), portnn.BinaryCrossEntropy)
    assert isinstance(portnn.losses.get("CrossEntropy"), portnn.CrossEntropy)
    with pytest.raises(ValueError, match="unknown loss 'hinge'.*valid names"):
        portnn.losses.get("hinge")


def test_crossentropy_onehot_with_wrong_class_count(backend):
    message = r"CrossEntropy: y_pred has shape \(2, 3\) but y_true has shape \(2, 4\)"
    with pytest.raises(ValueError, match=message):
        portnn.CrossEntropy()(backend.asarray(np.zeros((2, 3), np.float32)),
                              backend.asarray(np.eye(4, dtype=np.float32)[:2]))


def test_crossentropy_onehot_is_stable_for_huge_logits(backend, torch):
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 5e3, 0.0]], np.float32)
    onehot = np.eye(3, dtype=np.float32)[[2, 0]]
    loss = portnn.CrossEntropy()
    value = loss(backend.asarray(logits), backend.asarray(onehot))
    ref = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(onehot))
    assert_close(value, ref.item(), rtol=1e-5)
    assert np.all(np.isfinite(portnn.to_numpy(loss.backward())))

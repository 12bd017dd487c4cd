"""Per-sample and class weights: the losses' weight= and fit(class_weight=, sample_weight=) vs PyTorch."""

import numpy as np
import pytest

import portnn
from conftest import assert_close, has_float64


class Frozen(portnn.SGD):
    """An optimizer that leaves the weights as they are: every batch sees the same model."""

    def step(self, layers):
        pass

def _dtype(be):
    return "float64" if has_float64(be) else "float32"


def _tol(be):
    return 1e-10 if has_float64(be) else 2e-5


def test_crossentropy_weight_equals_torch_class_weights(backend, torch):
    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((7, 4)), rng.integers(0, 4, 7)
    class_w = np.array([0.5, 2.0, 1.0, 3.0])
    z = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(z, torch.tensor(labels), weight=torch.tensor(class_w))
    ref.backward()
    loss = portnn.CrossEntropy()
    dt = _dtype(backend)
    for y in (labels, np.eye(4)[labels]):  # integer labels and one-hot targets
        value = loss(backend.asarray(logits, dtype=dt), backend.asarray(y, dtype=None if y.ndim == 1 else dt),
                     backend.asarray(class_w[labels], dtype=dt))
        assert_close(value, ref.item(), rtol=_tol(backend), atol=_tol(backend))
        assert_close(loss.backward(), z.grad.numpy(), rtol=_tol(backend), atol=_tol(backend))


@pytest.mark.parametrize("name", ["mse", "bce", "bce_logits"])
def test_weighted_mean_of_per_sample_means(backend, torch, name):
    rng = np.random.default_rng(1)
    pred = rng.uniform(0.05, 0.95, (6, 3)) if name == "bce" else rng.standard_normal((6, 3))
    target = rng.uniform(0, 1, (6, 3))
    w = np.array([1.0, 0.0, 2.5, 1.0, 0.5, 3.0])
    p = torch.tensor(pred, requires_grad=True)
    f = torch.nn.functional
    elementwise = {"mse": lambda: f.mse_loss(p, torch.tensor(target), reduction="none"),
                   "bce": lambda: f.binary_cross_entropy(p, torch.tensor(target), reduction="none"),
                   "bce_logits": lambda: f.binary_cross_entropy_with_logits(
                       p, torch.tensor(target), reduction="none")}[name]()
    ref = (elementwise.mean(dim=1) * torch.tensor(w)).sum() / w.sum()
    ref.backward()
    loss = {"mse": portnn.MSE(), "bce": portnn.BinaryCrossEntropy(),
            "bce_logits": portnn.BinaryCrossEntropy(from_logits=True)}[name]
    dt = _dtype(backend)
    value = loss(backend.asarray(pred, dtype=dt), backend.asarray(target, dtype=dt),
                 backend.asarray(w, dtype=dt))
    tol = _tol(backend) if name != "bce" else max(_tol(backend), 1e-7)
    assert_close(value, ref.item(), rtol=tol, atol=tol)
    assert_close(loss.backward(), p.grad.numpy(), rtol=tol, atol=tol)
    # Unweighted calls after a weighted one are plain means again.
    plain = loss(backend.asarray(pred, dtype=dt), backend.asarray(target, dtype=dt))
    assert_close(plain, elementwise.mean().item(), rtol=tol, atol=tol)


def test_weight_shape_error():
    with pytest.raises(ValueError, match=r"MSE: weight must have shape \(4,\)"):
        portnn.MSE()(np.ones((4, 2)), np.ones((4, 2)), np.ones(3))


def _net(dt):
    return portnn.Sequential([portnn.Dense(4, 5), portnn.Tanh(), portnn.Dense(5, 3)],
                             loss=portnn.CrossEntropy(), optimizer=portnn.SGD(0.5)).to(dtype=dt)


def _data():
    rng = np.random.default_rng(2)
    return rng.standard_normal((9, 4)), np.arange(9) % 3


def test_fit_class_weight_matches_torch(backend, torch):
    dt = _dtype(backend)
    x, y = _data()
    model = _net(dt)
    w1, b1, w2, b2 = (portnn.to_numpy(model.layers[i].params[k]) for i in (0, 2)
                      for k in ("weight", "bias"))
    params = [torch.tensor(a.astype(np.float64), requires_grad=True) for a in (w1, b1, w2, b2)]
    opt = torch.optim.SGD(params, lr=0.5)
    cw = {0: 1.0, 1: 4.0, 2: 0.5}
    losses = []
    for _ in range(2):
        opt.zero_grad()
        out = torch.tanh(torch.tensor(x) @ params[0] + params[1]) @ params[2] + params[3]
        loss = torch.nn.functional.cross_entropy(out, torch.tensor(y),
                                                 weight=torch.tensor([1.0, 4.0, 0.5], dtype=torch.float64))
        loss.backward()
        losses.append(loss.item())
        opt.step()
    history = model.fit(x, y, epochs=2, batch_size=None, shuffle=False, verbose=0, class_weight=cw)
    tol = _tol(backend)
    assert history["loss"] == pytest.approx(losses, rel=max(tol, 1e-6))
    assert_close(model.layers[2].params["weight"], params[2].detach().numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("shuffle", [False, True])
def test_integer_sample_weights_equal_repeated_samples(backend, shuffle):
    """Full-batch training with weight 2 on a sample equals training with that sample twice."""
    dt = _dtype(backend)
    x, y = _data()
    sw = np.ones(9)
    sw[[1, 4]] = 2.0
    weighted, repeated = _net(dt), _net(dt)
    for a, b in zip(weighted.layers, repeated.layers, strict=True):
        for k in a.params:
            b.params[k] = backend.asarray(portnn.to_numpy(a.params[k]), dtype=dt)
    h1 = weighted.fit(x, y, epochs=3, batch_size=None, shuffle=shuffle, verbose=0, sample_weight=sw)
    idx = np.r_[np.arange(9), [1, 4]]
    h2 = repeated.fit(x[idx], y[idx], epochs=3, batch_size=None, shuffle=shuffle, verbose=0)
    tol = 1e-9 if dt == "float64" else 1e-5
    assert h1["loss"] == pytest.approx(h2["loss"], rel=tol)
    assert_close(weighted.layers[0].params["weight"], portnn.to_numpy(repeated.layers[0].params["weight"]),
                 rtol=tol, atol=tol)


def test_minibatch_epoch_loss_is_the_weighted_mean(backend):
    # The epoch loss is sum(w_i l_i) / sum(w_i) over the epoch, also with batches and shuffling.
    dt = _dtype(backend)
    x, y = _data()
    sw = np.linspace(0.5, 2.0, 9)
    model = _net(dt)
    model.optimizer = Frozen()  # every batch sees the same model
    h = model.fit(x, y, epochs=1, batch_size=2, verbose=0, sample_weight=sw)
    out = portnn.to_numpy(model.predict(x)).astype(np.float64)
    log_p = out - out.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    expected = np.sum(sw * -log_p[np.arange(9), y]) / sw.sum()
    assert h["loss"][0] == pytest.approx(expected, rel=1e-5)


def test_weight_argument_errors():
    x, y = _data()
    model = _net("float32")
    with pytest.raises(ValueError, match=r"class_weight has no weight for classes \[2\]"):
        model.fit(x, y, verbose=0, class_weight={0: 1.0, 1: 2.0})
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(9,\)"):
        model.fit(x, y, verbose=0, sample_weight=np.ones(8))
    with pytest.raises(ValueError, match="finite, >= 0 and not all 0"):
        model.fit(x, y, verbose=0, sample_weight=-np.ones(9))


def test_bce_class_weight_from_a_binary_column(backend, torch):
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((10, 3)), (np.arange(10) % 3 == 0).astype(np.float64)[:, None]
    model = portnn.Sequential([portnn.Dense(3, 1)], loss=portnn.BinaryCrossEntropy(from_logits=True),
                              optimizer=Frozen()).to(dtype=_dtype(backend))
    h = model.fit(x, y, epochs=1, batch_size=3, verbose=0, class_weight={0: 1.0, 1: 4.0})
    z = torch.tensor(portnn.to_numpy(model.predict(x)).astype(np.float64))
    w = torch.tensor(np.where(y[:, 0] > 0.5, 4.0, 1.0))
    per_sample = torch.nn.functional.binary_cross_entropy_with_logits(z, torch.tensor(y),
                                                                      reduction="none")[:, 0]
    assert h["loss"][0] == pytest.approx(((per_sample * w).sum() / w.sum()).item(), rel=1e-5)

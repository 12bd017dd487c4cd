"""Sequential: training, history, printing, evaluation, optimizers vs PyTorch, no read-backs in a step."""

import re

import numpy as np
import pytest

import portnn
from conftest import assert_close, has_float64
from portnn.network import format_epoch

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_Y = np.array([[0], [1], [1], [0]], np.float32)


def _xor_net(lr: float = 0.1) -> portnn.Sequential:
    return portnn.Sequential([portnn.Dense(2, 3), portnn.Tanh(), portnn.Dense(3, 1), portnn.Tanh()],
                             loss=portnn.MSE(), optimizer=portnn.SGD(lr))


def _classifier(optimizer=None) -> portnn.Sequential:
    return portnn.Sequential([portnn.Dense(4, 5), portnn.ReLU(), portnn.Dense(5, 3)],
                             loss=portnn.CrossEntropy(), optimizer=optimizer or portnn.SGD(0.1))


def _blobs(n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return (rng.standard_normal((n, 4)) + 2 * np.eye(3, 4)[y]).astype(np.float32), y


def _host_params(model: portnn.Sequential) -> list[dict[str, np.ndarray]]:
    return [{k: portnn.to_numpy(v).copy() for k, v in layer.params.items()} for layer in model.layers]


def test_xor_converges_per_sample(backend):
    model = _xor_net()
    history = model.fit(XOR_X, XOR_Y, epochs=150, batch_size=1, verbose=0)
    assert history["loss"][-1] < 0.02 < history["loss"][0]
    pred = portnn.to_numpy(model.predict(XOR_X))
    np.testing.assert_array_equal(pred > 0.5, XOR_Y > 0.5)


def test_history_keys_and_lengths(backend):
    x, y = _blobs()
    history = _classifier().fit(x, y, epochs=3, batch_size=4, validation_data=_blobs(6, 1), verbose=0)
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 and all(type(f) is float for f in v) for v in history.values())
    assert history.epochs == 3
    assert set(_xor_net().fit(XOR_X, XOR_Y, epochs=2, verbose=0)) == {"loss"}


def test_validation_metrics_equal_evaluate(backend):
    x, y = _blobs()
    xv, yv = _blobs(6, seed=1)
    model = _classifier()
    history = model.fit(x, y, epochs=2, batch_size=4, validation_data=(xv, yv), verbose=0)
    after = model.evaluate(xv, yv)
    assert history["val_loss"][-1] == pytest.approx(after["loss"], rel=1e-6)
    assert history["val_accuracy"][-1] == after["accuracy"]


def test_epoch_line_format():
    assert format_epoch(3, 1000, {"loss": 0.3071954}) == "epoch 3/1000 error=0.307195"
    assert (format_epoch(1, 2, {"loss": 0.5, "accuracy": 0.75, "val_loss": 1.0, "val_accuracy": 0.5})
            == "epoch 1/2 error=0.500000 accuracy=0.7500 val_error=1.000000 val_accuracy=0.5000")


def test_fit_prints_one_line_per_epoch(backend, capsys):
    history = _xor_net().fit(XOR_X, XOR_Y, epochs=3, batch_size=1)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines):
        assert re.fullmatch(rf"epoch {i + 1}/3 error=\d\.\d{{6}}", line), line
        assert float(line.split("=")[1]) == pytest.approx(history["loss"][i], abs=1e-6)


def test_verbose_n_prints_every_nth_epoch_plus_first_and_last(capsys):
    _xor_net().fit(XOR_X, XOR_Y, epochs=7, verbose=3)
    printed = [line.split()[1] for line in capsys.readouterr().out.splitlines()]
    assert printed == ["1/7", "3/7", "6/7", "7/7"]
    _xor_net().fit(XOR_X, XOR_Y, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""


def test_full_batch_is_one_step_by_hand(backend):
    dt = "float64" if has_float64(backend) else "float32"
    model = portnn.Sequential([portnn.Dense(3, 4), portnn.Tanh(), portnn.Dense(4, 2)],
                              loss=portnn.MSE(), optimizer=portnn.SGD(0.5)).to(dtype=dt)
    rng = np.random.default_rng(3)
    x, t = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    (p1, p2) = (_host_params(model)[i] for i in (0, 2))
    w1, b1, w2, b2 = (a.astype(np.float64) for a in (p1["weight"], p1["bias"], p2["weight"], p2["bias"]))
    # Forward, MSE gradient 2 (y - t) / size, backward and SGD, in float64 NumPy.
    h = np.tanh(x @ w1 + b1)
    y = h @ w2 + b2
    dy = 2 * (y - t) / y.size
    dh = (dy @ w2.T) * (1 - h * h)
    expected = [w1 - 0.5 * x.T @ dh, b1 - 0.5 * dh.sum(0), w2 - 0.5 * h.T @ dy, b2 - 0.5 * dy.sum(0)]

    history = model.fit(x, t, epochs=1, batch_size=None, shuffle=False, verbose=0)
    tol = 1e-10 if dt == "float64" else 1e-5
    assert history["loss"][0] == pytest.approx(np.mean((y - t) ** 2), rel=tol)
    got = [model.layers[0].params["weight"], model.layers[0].params["bias"],
           model.layers[2].params["weight"], model.layers[2].params["bias"]]
    for actual, want in zip(got, expected, strict=True):
        assert_close(actual, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("shuffle", [False, True])
def test_last_batch_may_be_short(backend, shuffle):
    x, y = _blobs()
    history = _classifier().fit(x, y, epochs=1, batch_size=5, shuffle=shuffle, verbose=0)
    assert np.isfinite(history["loss"][0])


def test_shuffling_is_seeded(backend):
    x, y = _blobs()
    portnn.seed(0)
    start = _host_params(model := _classifier())

    def train(seed: int) -> list[float]:
        for layer, params in zip(model.layers, start, strict=True):
            for k, v in params.items():
                layer.params[k] = backend.asarray(v)
        model.optimizer = portnn.SGD(0.1)
        portnn.seed(seed)
        return model.fit(x, y, epochs=3, batch_size=2, verbose=0)["loss"]

    assert train(1) == train(1)
    assert train(1) != train(2)


def test_predict_and_evaluate(backend):
    x, y = _blobs()
    model = _classifier()
    out = model.predict(x)
    assert tuple(out.shape) == (12, 3) and portnn.backends.backend_of(out) == backend
    layers = _host_params(model)
    h = np.maximum(x @ layers[0]["weight"] + layers[0]["bias"], 0)
    logits = h @ layers[2]["weight"] + layers[2]["bias"]
    assert_close(out, logits, rtol=1e-5, atol=1e-5)
    assert_close(model.predict(x, batch_size=5), logits, rtol=1e-5, atol=1e-5)

    result = model.evaluate(x, y)
    shifted = logits - logits.max(1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    assert result["loss"] == pytest.approx(-log_p[np.arange(12), y].mean(), rel=1e-5)
    assert result["accuracy"] == np.mean(logits.argmax(1) == y)
    assert model.evaluate(x, y, batch_size=5)["loss"] == pytest.approx(result["loss"], rel=1e-5)


@pytest.mark.parametrize("momentum, nesterov, weight_decay",
                         [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.0), (0.5, True, 0.1),
                          (0.0, False, 0.01)])
def test_sgd_steps_match_torch(backend, torch, momentum, nesterov, weight_decay):
    dt = "float64" if has_float64(backend) else "float32"
    opt = portnn.SGD(0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    model = portnn.Sequential([portnn.Dense(3, 2)], loss=portnn.MSE(), optimizer=opt).to(dtype=dt)
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))

    ref = torch.nn.Linear(3, 2, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(portnn.to_numpy(model.layers[0].params["weight"]).T))
        ref.bias.zero_()
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=momentum, nesterov=nesterov,
                              weight_decay=weight_decay)
    for _ in range(3):
        ref_opt.zero_grad()
        torch.nn.functional.mse_loss(ref(torch.tensor(x)), torch.tensor(t)).backward()
        ref_opt.step()

    model.fit(x, t, epochs=3, batch_size=None, shuffle=False, verbose=0)
    tol = 1e-10 if dt == "float64" else 1e-5
    assert_close(model.layers[0].params["weight"], ref.weight.detach().numpy().T, rtol=tol, atol=tol)
    assert_close(model.layers[0].params["bias"], ref.bias.detach().numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("loss", ["mse", "crossentropy", "bce"])
def test_train_step_never_reads_back(any_device, loss):
    # On torch's meta device any read-back (float(), .item(), to_numpy) raises.
    nets = {"mse": (portnn.MSE(), np.ones((5, 3), np.float32)),
            "crossentropy": (portnn.CrossEntropy(), np.array([0, 2, 1, 1, 0])),
            "bce": (portnn.BinaryCrossEntropy(from_logits=True), np.ones((5, 3), np.float32))}
    loss_fn, y = nets[loss]
    model = portnn.Sequential([portnn.Dense(4, 6), portnn.ReLU(), portnn.Dense(6, 3)], loss=loss_fn,
                              optimizer=portnn.SGD(0.1, momentum=0.9, weight_decay=1e-3))
    for _ in range(2):
        value, correct = model.train_step(any_device.asarray(np.ones((5, 4), np.float32)),
                                          any_device.asarray(y))
    assert tuple(value.shape) == () and portnn.backends.backend_of(value) == any_device
    assert (correct is None) == (loss == "mse")
    velocity = model.optimizer.state["0.weight"]["velocity"]
    assert portnn.backends.backend_of(velocity) == any_device


def test_fit_reads_back_once_per_epoch_not_per_step(backend, monkeypatch):
    reads = []
    monkeypatch.setattr(portnn.training.loop, "float", lambda v: reads.append(1) or float(v), raising=False)
    monkeypatch.setattr(portnn.Backend, "to_numpy", lambda self, a: reads.append(1) or 1 / 0)
    x, y = _blobs()
    _classifier().fit(x, y, epochs=2, batch_size=1, verbose=0)
    per_sample = len(reads)
    reads.clear()
    _classifier().fit(x, y, epochs=2, batch_size=None, verbose=0)
    assert per_sample == len(reads) == 2 * 2  # loss and accuracy, once per epoch


def test_early_stopping_callback(backend):
    seen = []

    def stop_after_two(model, epoch, logs):
        seen.append((epoch, sorted(logs)))
        return epoch == 1

    history = _xor_net().fit(XOR_X, XOR_Y, epochs=10, verbose=0, callbacks=[stop_after_two])
    assert history.epochs == 2 and seen == [(0, ["loss"]), (1, ["loss"])]


def test_fit_argument_errors():
    with pytest.raises(ValueError, match="needs a loss and an optimizer"):
        portnn.Sequential([portnn.Dense(2, 1)]).fit(XOR_X, XOR_Y)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        _xor_net().fit(XOR_X, XOR_Y, batch_size=0)
    with pytest.raises(ValueError, match="x has 4 samples but y has 3"):
        _xor_net().fit(XOR_X, XOR_Y[:3])


def test_layers_on_different_backends_are_rejected():
    first = portnn.Dense(2, 2)
    with portnn.use_backend("array_api_strict", "device1"):
        second = portnn.Dense(2, 1)
    with pytest.raises(ValueError, match="different backends.*array_api_strict-device1.*numpy-cpu"):
        portnn.Sequential([first, second])
    model = portnn.Sequential([first, second], backend="numpy")
    assert model.backend.name == "numpy"


def test_train_step_grads_equal_full_backward(backend):
    # train_step stops at the first trained layer (no dx there); the gradients must not change.
    model = portnn.Sequential([portnn.Flatten(), portnn.Dense(6, 4), portnn.Tanh(), portnn.Dense(4, 2)],
                              loss=portnn.MSE(), optimizer=portnn.SGD(0.1))  # steps after the grads
    x = backend.asarray(np.random.default_rng(0).standard_normal((3, 2, 3)))
    t = backend.asarray(np.ones((3, 2), np.float32))
    model.loss(model.forward(x, training=True), t)
    dx = model.backward(model.loss.backward())
    assert tuple(dx.shape) == (3, 2, 3)
    full = [{k: portnn.to_numpy(g).copy() for k, g in layer.grads.items()} for layer in model.layers]
    for layer in model.layers:
        layer.grads.clear()
    model.train_step(x, t)
    for layer, expected in zip(model.layers, full, strict=True):
        assert set(layer.grads) == set(expected)
        for key, g in expected.items():
            assert_close(layer.grads[key], g, rtol=1e-6, atol=1e-7)

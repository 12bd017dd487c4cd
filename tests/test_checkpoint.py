"""Checkpoints: one pickle-free .npz that round-trips, crosses backends, resumes training exactly."""

import json
import os
import zipfile

import numpy as np
import pytest

import portnn
from conftest import has_float64
from portnn.backends import BackendError, backend_of

rng = np.random.default_rng(0)
X = rng.standard_normal((12, 4)).astype(np.float32)
Y = rng.integers(0, 3, 12)

SOURCES = [("numpy", "cpu"), ("array_api_strict", "device1"), ("torch", "cpu"), ("jax", "cpu")]


def _mlp(optimizer=None):
    layers = [portnn.Dense(4, 5), portnn.Tanh(), portnn.Dense(5, 3, init="he_normal")]
    optimizer = optimizer or portnn.Adam(portnn.StepDecay(0.05, step_size=1, gamma=0.5))
    return portnn.Sequential(layers, loss="crossentropy", optimizer=optimizer)


def _trained(epochs=2, **kwargs):
    model = _mlp(**kwargs)
    model.fit(X, Y, epochs=epochs, batch_size=4, shuffle=False, verbose=0)
    return model


def _host(array):
    return portnn.to_numpy(array).copy()


def _snapshot(model):
    """Every saved array of a model, on the host, by checkpoint name."""
    arrays = {f"param/{i}/{k}": _host(v) for i, layer in enumerate(model.layers)
              for k, v in layer.params.items()}
    arrays.update({f"buffer/{i}/{k}": _host(v) for i, layer in enumerate(model.layers)
                   for k, v in layer.buffers.items()})
    arrays.update({f"opt/{name}/{k}": _host(v) for name, state in model.optimizer.state.items()
                   for k, v in state.items()})
    return arrays


def _assert_same_arrays(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_round_trip(backend, tmp_path):
    model = _trained()
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = portnn.Sequential.load(path)
    assert loaded.backend == backend
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    _assert_same_arrays(_snapshot(loaded), _snapshot(model))
    for layer in loaded.layers:
        for value in layer.params.values():
            assert backend_of(value) == backend
    for state in loaded.optimizer.state.values():
        assert all(backend_of(v) == backend for v in state.values())
    assert type(loaded.loss) is portnn.CrossEntropy
    opt = loaded.optimizer
    assert (type(opt), opt.t, opt.epoch) == (portnn.Adam, 6, 2)
    assert opt.config() == model.optimizer.config()
    assert opt.current_lr == model.optimizer.current_lr == 0.0125
    np.testing.assert_array_equal(_host(loaded.predict(X)), _host(model.predict(X)))


def test_file_is_plain_numpy_without_pickle(tmp_path):
    _trained().save(tmp_path / "model.npz")
    with np.load(tmp_path / "model.npz", allow_pickle=False) as f:
        meta = json.loads(str(f["__portnn__"]))
        names = set(f.files)
        assert f["param/0/weight"].shape == (4, 5) and f["param/0/weight"].dtype == np.float32
    assert meta["format"] == "portnn-checkpoint" and meta["version"] == 1
    assert [e["class"] for e in meta["layers"]] == ["Dense", "Tanh", "Dense"]
    assert meta["optimizer"]["t"] == 6 and meta["optimizer"]["config"]["lr"]["schedule"] == "StepDecay"
    assert {"opt/0.weight/m", "opt/0.weight/v", "opt/2.bias/v"} <= names


@pytest.mark.parametrize("source", SOURCES, ids=[f"{n}-{d}" for n, d in SOURCES])
def test_save_on_one_backend_load_on_another(backend, tmp_path, source):
    try:
        with portnn.use_backend(*source):
            model = _trained()
            want = _host(model.predict(X))
            saved = _snapshot(model)
    except BackendError as exc:
        pytest.skip(f"source {source} unavailable: {exc}")
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = portnn.Sequential.load(path, backend=backend.name, device=backend.device_name)
    assert loaded.backend == backend
    np.testing.assert_allclose(_host(loaded.predict(X)), want, rtol=1e-5, atol=1e-6)
    _assert_same_arrays(_snapshot(loaded), saved)  # the stored values themselves are exact
    # And back again: the target saves a file the source reads.
    loaded.save(path)
    with portnn.use_backend(*source):
        again = portnn.Sequential.load(path)
    _assert_same_arrays(_snapshot(again), saved)


@pytest.mark.parametrize("make_optimizer", [
    lambda: portnn.Adam(portnn.StepDecay(0.05, step_size=1, gamma=0.5)),
    lambda: portnn.SGD(portnn.CosineDecay(0.1, epochs=4), momentum=0.9, nesterov=True),
    lambda: portnn.RMSProp(portnn.ExponentialDecay(0.01, 0.8), weight_decay=0.01),
    lambda: portnn.AdamW(0.01),
], ids=["adam-step", "sgd-cosine", "rmsprop-exp", "adamw"])
def test_resumed_training_continues_exactly(backend, tmp_path, make_optimizer):
    portnn.seed(1)
    straight = _trained(epochs=4, optimizer=make_optimizer())
    portnn.seed(1)
    first_half = _trained(epochs=2, optimizer=make_optimizer())
    first_half.save(tmp_path / "half.npz")
    resumed = portnn.Sequential.load(tmp_path / "half.npz")
    history = resumed.fit(X, Y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    assert resumed.optimizer.t == straight.optimizer.t == 12
    assert resumed.optimizer.epoch == straight.optimizer.epoch == 4
    _assert_same_arrays(_snapshot(resumed), _snapshot(straight))
    assert len(history["loss"]) == 2


def test_resume_needs_the_optimizer_state(tmp_path):
    """The resume test has teeth: fresh optimizer state on the same weights diverges."""
    straight = _trained(epochs=4)
    model = _trained(epochs=2)
    model.optimizer = portnn.Adam(portnn.StepDecay(0.05, step_size=1, gamma=0.5))
    model.fit(X, Y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    assert not np.array_equal(_host(model.layers[0].params["weight"]),
                              _host(straight.layers[0].params["weight"]))


def test_saving_does_not_move_the_model(backend, tmp_path):
    model = _trained()
    params = {(i, k): v for i, layer in enumerate(model.layers) for k, v in layer.params.items()}
    state = {(n, k): v for n, s in model.optimizer.state.items() for k, v in s.items()}
    before = _snapshot(model)
    model.save(tmp_path / "model.npz")
    for (i, k), value in params.items():
        assert model.layers[i].params[k] is value
        assert backend_of(value) == backend
    for (n, k), value in state.items():
        assert model.optimizer.state[n][k] is value
    _assert_same_arrays(_snapshot(model), before)
    model.fit(X, Y, epochs=1, batch_size=4, verbose=0)  # still trains where it was


def test_failed_save_keeps_the_earlier_file(tmp_path, monkeypatch):
    model = _trained()
    path = tmp_path / "model.npz"
    model.save(path)
    original = path.read_bytes()
    model.fit(X, Y, epochs=1, verbose=0)

    def broken_savez(file, **arrays):
        file.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind
    monkeypatch.undo()
    model.save(path)
    assert path.read_bytes() != original
    assert os.listdir(tmp_path) == ["model.npz"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_saved_file_mode_follows_umask(tmp_path):
    mask = os.umask(0o022)
    try:
        _mlp().save(tmp_path / "model.npz")
    finally:
        os.umask(mask)
    assert (tmp_path / "model.npz").stat().st_mode & 0o777 == 0o644


def test_unreadable_files_give_clear_errors(tmp_path):
    good = tmp_path / "good.npz"
    _trained().save(good)
    cases = {
        "truncated.npz": good.read_bytes()[: good.stat().st_size // 2],
        "text.npz": b"epoch 1/10 error=0.5\n",
        "empty.npz": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    np.savez(tmp_path / "foreign.npz", weights=np.ones(3))
    for name, match in [("truncated.npz", "truncated"), ("text.npz", "not a .npz"),
                        ("empty.npz", "not a .npz"), ("foreign.npz", "not a portnn checkpoint")]:
        with pytest.raises(portnn.CheckpointError, match=match) as info:
            portnn.Sequential.load(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)
    with pytest.raises(FileNotFoundError):
        portnn.Sequential.load(tmp_path / "missing.npz")


def _rewrite(path, change):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    change(arrays)
    np.savez(path, **arrays)


def _set_meta(arrays, edit):
    meta = json.loads(str(arrays["__portnn__"]))
    edit(meta)
    arrays["__portnn__"] = np.array(json.dumps(meta))


@pytest.mark.parametrize("change, match", [
    (lambda a: a.update({"param/0/weight": np.zeros((5, 4), np.float32)}), r"shape \(5, 4\)"),
    (lambda a: a.pop("param/2/bias"), "needs.*param/2/bias.*lacks"),
    (lambda a: a.update({"param/1/weight": np.zeros(3, np.float32)}), "param/1/weight"),
    (lambda a: a.update({"param/7/weight": np.zeros(3, np.float32)}), "param/7/weight"),
    (lambda a: a.update({"opt/0.weight/m": np.zeros((4, 4), np.float32)}), "opt/0.weight/m"),
    (lambda a: a.update({"opt/9.kernel/m": np.zeros(2, np.float32)}), "opt/9.kernel/m"),
    (lambda a: _set_meta(a, lambda m: m["layers"].pop()), "param/2/weight"),
    (lambda a: _set_meta(a, lambda m: m["layers"][0].update({"class": "Spline"})), "Spline"),
    (lambda a: _set_meta(a, lambda m: m["layers"][0]["config"].update({"out_features": 6})),
     r"\(4, 5\).*\(4, 6\)"),
    (lambda a: _set_meta(a, lambda m: m.update({"version": 99})), "version 99"),
    (lambda a: _set_meta(a, lambda m: m.pop("layers")), "architecture"),
], ids=["shape", "missing", "param-free-layer", "no-such-layer", "opt-shape", "opt-owner",
        "fewer-layers", "unknown-class", "config", "version", "no-layers"])
def test_arrays_must_fit_the_architecture(tmp_path, change, match):
    path = tmp_path / "model.npz"
    _trained().save(path)
    _rewrite(path, change)
    with pytest.raises(portnn.CheckpointError, match=match) as info:
        portnn.Sequential.load(path)
    assert str(path) in str(info.value)


def test_model_without_loss_or_optimizer(backend, tmp_path):
    custom = lambda shape, fan_in, fan_out: np.full(shape, 0.5, np.float32)  # noqa: E731
    model = portnn.Sequential([portnn.Dense(4, 2, init=custom), portnn.Sigmoid()])
    model.save(tmp_path / "bare.npz")
    loaded = portnn.Sequential.load(tmp_path / "bare.npz")
    assert loaded.loss is None and loaded.optimizer is None
    np.testing.assert_array_equal(_host(loaded.predict(X)), _host(model.predict(X)))


def test_float64_model_keeps_its_dtype(backend, tmp_path):
    if not has_float64(backend):
        pytest.skip(f"{backend} has no float64")
    model = portnn.Sequential([portnn.Dense(4, 3, dtype="float64")], loss="mse", optimizer="sgd")
    model.save(tmp_path / "f64.npz")
    loaded = portnn.Sequential.load(tmp_path / "f64.npz")
    assert loaded.layers[0].params["weight"].dtype == backend.dtype("float64")
    np.testing.assert_array_equal(_host(loaded.layers[0].params["weight"]),
                                  _host(model.layers[0].params["weight"]))


def test_cnn_with_batchnorm_and_dropout_round_trips(backend, tmp_path):
    needed = ["Conv2D", "BatchNorm", "Dropout", "MaxPool2D", "Flatten"]
    missing = [name for name in needed if not hasattr(portnn.layers, name)]
    if missing:
        pytest.skip(f"portnn.layers has no {missing} yet")
    L = portnn.layers
    model = portnn.Sequential([
        L.Conv2D(1, 3, kernel_size=3, padding=1), L.BatchNorm(3), portnn.ReLU(),
        L.MaxPool2D(2), L.Dropout(0.25), L.Flatten(), portnn.Dense(12, 2)],
        loss="crossentropy", optimizer=portnn.SGD(0.05, momentum=0.9))
    x = np.random.default_rng(2).standard_normal((6, 1, 4, 4)).astype(np.float32)
    y = np.array([0, 1, 1, 0, 1, 0])
    model.fit(x, y, epochs=2, batch_size=3, verbose=0)
    running = _host(model.layers[1].buffers["running_mean"])
    assert not np.array_equal(running, np.zeros(3))  # training moved the running statistics
    path = tmp_path / "cnn.npz"
    model.save(path)
    loaded = portnn.Sequential.load(path)
    _assert_same_arrays(_snapshot(loaded), _snapshot(model))
    assert loaded.layers[4].p == 0.25
    np.testing.assert_array_equal(_host(loaded.predict(x)), _host(model.predict(x)))
    with portnn.use_backend("numpy"):
        on_numpy = portnn.Sequential.load(path)
    np.testing.assert_allclose(_host(on_numpy.predict(x)), _host(model.predict(x)),
                               rtol=1e-5, atol=1e-6)


def test_truncated_member_is_a_checkpoint_error(tmp_path):
    """A zip whose directory survives but whose data is damaged (bad CRC) is reported too."""
    path = tmp_path / "model.npz"
    _trained().save(path)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("param/0/weight.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 128
    raw[start:start + 8] = b"\xff" * 8
    path.write_bytes(bytes(raw))
    with pytest.raises(portnn.CheckpointError, match="corrupt") as err:
        portnn.Sequential.load(path)
    assert str(path) in str(err.value)

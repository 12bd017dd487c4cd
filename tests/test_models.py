"""The model base: parameter paths, nested blocks, user layers in checkpoints, the loop's strategy."""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from conftest import assert_close, has_float64
from portnn import distributed
from portnn.models import BaseModel


class Scale(portnn.Layer):
    """A user's own layer: ``y = x * weight`` per feature (the README's kind of layer)."""

    def __init__(self, features: int, start: float = 1.0) -> None:
        super().__init__()
        self.features, self.start = features, start
        self.add_param("weight", np.full(features, start, np.float32))

    def forward(self, x, training=False):
        self.x = x
        return x * self.params["weight"]

    def backward(self, dy):
        xp = portnn.backends.array_namespace(dy)
        self.grads["weight"] = xp.sum(dy * self.x, axis=0)
        return dy * self.params["weight"]


class Block(portnn.Layer):
    """A block whose children are attributes: Dense -> Tanh -> Scale."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = features
        self.dense, self.act, self.scale = portnn.Dense(features, features), portnn.Tanh(), Scale(features)

    def forward(self, x, training=False):
        return self.scale.forward(self.act.forward(self.dense.forward(x, training), training), training)

    def backward(self, dy):
        return self.dense.backward(self.act.backward(self.scale.backward(dy)))


def _data(n=12, features=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, features)).astype(np.float32), rng.integers(0, 2, n)


def test_parameters_have_paths():
    inner = portnn.Sequential([portnn.Dense(3, 3), portnn.ReLU(), Block(3)])
    model = portnn.Sequential([inner, portnn.Dense(3, 2)], loss="crossentropy", optimizer="sgd")
    assert isinstance(model, portnn.Layer) and isinstance(inner, BaseModel)
    assert [p for p, _, _ in model.named_parameters()] == [
        "0.0.weight", "0.0.bias", "0.2.dense.weight", "0.2.dense.bias", "0.2.scale.weight",
        "1.weight", "1.bias"]
    assert list(inner.children()) == ["0", "1", "2"]
    assert list(Block(2).children()) == ["dense", "act", "scale"]
    shared = portnn.Dense(3, 3)
    twice = portnn.Sequential([shared, portnn.Tanh(), shared])
    assert [p for p, _, _ in twice.named_parameters()] == ["0.weight", "0.bias"]  # listed once


def test_nested_blocks_train_save_and_load_on_every_backend(backend, tmp_path):
    x, y = _data()
    model = portnn.Sequential([portnn.Sequential([portnn.Dense(3, 4), portnn.ReLU()]), Block(4),
                               portnn.Dense(4, 2)], loss="crossentropy", optimizer=portnn.Adam(0.05))
    before = portnn.to_numpy(model.named_parameters()[4][1].params["weight"]).copy()  # Block's Scale
    history = model.fit(x, y, epochs=3, batch_size=4, verbose=0)
    assert history["loss"][-1] < history["loss"][0]
    moved = portnn.to_numpy(model.layers[1].scale.params["weight"])
    assert not np.array_equal(moved, before)  # the Scale deep inside the block trained too
    assert set(model.optimizer.state) == {p for p, _, _ in model.named_parameters()}
    model.save(tmp_path / "nested.npz")
    with np.load(tmp_path / "nested.npz") as f:
        assert {"param/0/0/weight", "param/1/dense/bias", "param/1/scale/weight",
                "opt/1.scale.weight/m"} <= set(f.files)
    loaded = portnn.Sequential.load(tmp_path / "nested.npz", backend=backend)
    assert type(loaded.layers[0]) is portnn.Sequential and type(loaded.layers[1]) is Block
    assert_close(loaded.predict(x), portnn.to_numpy(model.predict(x)), rtol=1e-6, atol=1e-7)
    assert loaded.optimizer.t == model.optimizer.t
    more, again = model.fit(x, y, epochs=1, verbose=0), loaded.fit(x, y, epochs=1, verbose=0)
    assert more["loss"] == pytest.approx(again["loss"], rel=1e-5)


def test_a_user_layer_round_trips_through_a_checkpoint(tmp_path):
    model = portnn.Sequential([portnn.Dense(3, 3), Scale(3, start=0.5)], loss="mse", optimizer="sgd")
    model.layers[1].params["weight"] = np.array([1.0, 2.0, 3.0], np.float32)
    model.save(tmp_path / "user.npz")
    loaded = portnn.Sequential.load(tmp_path / "user.npz")
    assert isinstance(loaded.layers[1], Scale) and loaded.layers[1].start == 0.5
    np.testing.assert_array_equal(portnn.to_numpy(loaded.layers[1].params["weight"]), [1.0, 2.0, 3.0])


def test_an_unknown_layer_class_is_a_clear_error(tmp_path):
    model = portnn.Sequential([Scale(2)])
    model.save(tmp_path / "m.npz")
    registry = portnn.layers._base.REGISTRY
    name = portnn.layers._base.class_name(Scale)
    del registry[name]
    try:
        with pytest.raises(portnn.CheckpointError, match=rf"unknown layer class '{name}'; define or "
                                                          r"import it before loading"):
            portnn.Sequential.load(tmp_path / "m.npz")
    finally:
        registry[name] = Scale


def test_a_nested_block_gradchecks(backend):
    if not has_float64(backend):
        pytest.skip(f"{backend} has no float64")
    block = portnn.Sequential([portnn.Dense(3, 4, dtype="float64"), portnn.Tanh(),
                               portnn.Sequential([portnn.Dense(4, 2, dtype="float64")])])
    portnn.gradcheck(block, np.random.default_rng(0).standard_normal((5, 3)))


def test_a_single_process_fit_runs_the_local_strategy():
    """No data-parallel branches: the loop calls the strategy's no-ops, and the model says which ran."""
    calls = []

    class Counting(distributed.Local):
        def shard(self, start, stop, order=None, weights=None):
            calls.append("shard")
            return start, stop

        def reduce(self, model):
            calls.append("reduce")

    model = portnn.Sequential([portnn.Dense(3, 2)], loss="crossentropy", optimizer="sgd")
    x, y = _data(n=8)
    seen = []
    original = distributed.DataParallel.plan
    distributed.DataParallel.plan = classmethod(lambda cls, m, d: Counting())
    try:
        model.fit(x, y, epochs=1, batch_size=4, verbose=0,
                  callbacks=[lambda m, epoch, logs: seen.append(type(m.strategy).__name__)])
    finally:
        distributed.DataParallel.plan = original
    assert calls == ["shard", "reduce"] * 2 and seen == ["Counting"]
    assert model.strategy is distributed.LOCAL


def test_a_layer_used_twice_keeps_a_cache_per_use_and_sums_its_gradients(backend, torch):
    """Dense -> Tanh -> the same Dense: against PyTorch with the weights copied in."""
    dt = "float64" if has_float64(backend) else "float32"
    shared = portnn.Dense(3, 3, dtype=dt)
    model = portnn.Sequential([shared, portnn.Tanh(), shared], loss="mse", optimizer=portnn.SGD(0.1))
    if dt == "float64":
        portnn.gradcheck(portnn.Sequential([shared, portnn.Tanh(), shared]),
                         np.random.default_rng(1).standard_normal((4, 3)))
    w, b = (torch.tensor(portnn.to_numpy(shared.params[k]), requires_grad=True) for k in ("weight", "bias"))
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(dt)
    t = np.random.default_rng(1).standard_normal((5, 3)).astype(dt)
    tx = torch.tensor(x)
    out = torch.tanh(tx @ w + b) @ w + b
    torch.nn.functional.mse_loss(out, torch.tensor(t)).backward()
    loss, _ = model.train_step(backend.asarray(x, dtype=dt), backend.asarray(t, dtype=dt))
    tol = 1e-10 if dt == "float64" else 1e-4
    assert float(loss) == pytest.approx(torch.nn.functional.mse_loss(out, torch.tensor(t)).item(), rel=tol)
    assert_close(shared.params["weight"], (w - 0.1 * w.grad).detach().numpy(), rtol=tol, atol=tol)
    assert_close(shared.params["bias"], (b - 0.1 * b.grad).detach().numpy(), rtol=tol, atol=tol)

"""Residual blocks: finite differences, the same block in PyTorch, training, checkpoints, errors."""

import numpy as np
import pytest

import portnn
from conftest import assert_close, has_float64


def _x(shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape)
    return np.where(np.abs(x) < 0.05, 0.3, x)  # away from ReLU's kink


def _dense_block():
    return portnn.Residual([portnn.Dense(4, 4), portnn.Tanh(), portnn.Dense(4, 4)])


def _conv_block(activation=portnn.ReLU):
    """A downsampling block: two 3x3 convolutions, stride 2 first, and a 1x1 stride-2 projection."""
    return portnn.Residual([portnn.Conv2D(2, 3, 3, stride=2, padding=1), activation(),
                            portnn.Conv2D(3, 3, 3, padding=1)], shortcut=portnn.Conv2D(2, 3, 1, stride=2))


# Tanh in the conv block: float32 differences across a ReLU kink would not be a fair check.
@pytest.mark.parametrize("make, shape", [(_dense_block, (3, 4)),
                                         (lambda: _conv_block(portnn.Tanh), (2, 2, 6, 6))])
def test_gradcheck(backend, make, shape):
    portnn.gradcheck(make(), _x(shape))


def test_matches_torch_step_for_step(backend, torch):
    """A conv block with a projection shortcut inside a model, trained 3 steps by portnn and by
    PyTorch from the same weights: the same losses and weights."""
    dt = "float64" if has_float64(backend) else "float32"
    tol = 1e-10 if dt == "float64" else 1e-4
    model = portnn.Sequential([_conv_block(), portnn.ReLU(), portnn.Flatten(), portnn.Dense(27, 2)],
                              loss="crossentropy", optimizer=portnn.SGD(0.1, momentum=0.9)).to(dtype=dt)
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(),
                                   nn.Conv2d(3, 3, 3, padding=1))
            self.shortcut = nn.Conv2d(2, 3, 1, stride=2)

        def forward(self, x):
            return self.f(x) + self.shortcut(x)

    ref = nn.Sequential(Block(), nn.ReLU(), nn.Flatten(), nn.Linear(27, 2)).double()
    pairs = {"0.0": ref[0].f[0], "0.2": ref[0].f[2], "0.shortcut": ref[0].shortcut, "3": ref[3]}
    with torch.no_grad():
        for path, owner, key in model.named_parameters():
            module = pairs[path.rsplit(".", 1)[0]]
            w = portnn.to_numpy(owner.params[key]).astype(np.float64)
            linear = isinstance(module, nn.Linear) and key == "weight"
            getattr(module, key).copy_(torch.tensor(w.T if linear else w))
    opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    x, y = _x((4, 2, 6, 6)), np.array([0, 1, 1, 0])
    xb, yb = model.prepare_inputs(x, y)
    for _ in range(3):
        loss, _ = model.train_step(xb, yb)
        opt.zero_grad()
        ref_loss = nn.functional.cross_entropy(ref(torch.tensor(x)), torch.tensor(y))
        ref_loss.backward()
        opt.step()
        assert abs(float(loss) - ref_loss.item()) < tol
    for path, owner, key in model.named_parameters():
        module = pairs[path.rsplit(".", 1)[0]]
        want = getattr(module, key).detach().numpy()
        linear = isinstance(module, nn.Linear) and key == "weight"
        assert_close(owner.params[key], want.T if linear else want, rtol=tol, atol=tol)


def test_trains_nests_saves_and_loads(backend, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    model = portnn.Sequential([portnn.Dense(4, 16), _shaped(16), portnn.ReLU(), portnn.Dense(16, 2)],
                              loss="crossentropy", optimizer=portnn.Adam(0.02))
    assert [p for p, _, _ in model.named_parameters()][2:6] == ["1.0.weight", "1.0.bias", "1.2.weight",
                                                                 "1.2.bias"]
    history = model.fit(x, y, epochs=60, batch_size=16, verbose=0)
    assert history["accuracy"][-1] > 0.9
    assert "Residual" in model.summary()
    model.save(tmp_path / "m.npz")
    loaded = portnn.Sequential.load(tmp_path / "m.npz", backend="numpy")
    np.testing.assert_allclose(portnn.to_numpy(loaded.predict(x)), portnn.to_numpy(model.predict(x)),
                               rtol=1e-5, atol=1e-5)
    block = _conv_block()
    twin = portnn.Sequential([block, portnn.Flatten(), portnn.Dense(27, 2)], loss="mse", optimizer="sgd")
    twin.save(tmp_path / "c.npz")
    again = portnn.Sequential.load(tmp_path / "c.npz")
    assert isinstance(again.layers[0].shortcut, portnn.Conv2D) and again.layers[0].shortcut._s == (2, 2)
    xs = _x((2, 2, 6, 6)).astype(np.float32)
    assert_close(again.predict(xs), portnn.to_numpy(twin.predict(xs)))


def _shaped(n):
    return portnn.Residual([portnn.Dense(n, n), portnn.Tanh(), portnn.Dense(n, n)])


def test_shape_mismatch_is_a_clear_error():
    block = portnn.Residual([portnn.Dense(4, 3)])
    with pytest.raises(ValueError, match=r"Residual: the layers turn \(2, 4\) into \(2, 3\) but the "
                                         r"shortcut gives \(2, 4\).*shortcut="):
        block.forward(np.ones((2, 4), np.float32))
    with pytest.raises(TypeError, match="Residual: layers must be a non-empty list"):
        portnn.Residual(portnn.Dense(2, 2))

"""Embedding, LayerNorm, GlobalAvgPool2D, UpSampling2D: finite differences, PyTorch, training."""

import numpy as np
import pytest

import portnn
from conftest import assert_close, has_float64

IDX = np.array([[1, 4, 1, 0], [4, 4, 2, 6]])  # repeated indices: their rows' gradients add up


def _dt(be):
    return "float64" if has_float64(be) else "float32"


def _tol(be):
    return 1e-10 if has_float64(be) else 1e-5


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


LAYERS = {  # name: (portnn layer, input, torch module factory or None, how to copy weights)
    "layernorm": (lambda: portnn.LayerNorm(5), (3, 4, 5), lambda nn: nn.LayerNorm(5)),
    "layernorm2d": (lambda: portnn.LayerNorm((4, 5)), (3, 4, 5), lambda nn: nn.LayerNorm((4, 5))),
    "globalavgpool": (portnn.GlobalAvgPool2D, (2, 3, 4, 5), lambda nn: nn.AdaptiveAvgPool2d(1)),
    "upsampling": (lambda: portnn.UpSampling2D((2, 3)), (2, 3, 4, 5),
                   lambda nn: nn.Upsample(scale_factor=(2, 3), mode="nearest")),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_gradcheck(backend, name):
    make, shape, _ = LAYERS[name]
    layer = make()
    if name.startswith("layernorm"):  # not the identity affine map
        layer.params["weight"] = 1 + 0.3 * _x(layer.params["weight"].shape, 5)
        layer.params["bias"] = 0.1 * _x(layer.params["bias"].shape, 6)
    portnn.gradcheck(layer, _x(shape))


def test_embedding_gradcheck(backend):
    portnn.gradcheck(portnn.Embedding(7, 3), IDX)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_matches_torch(backend, torch, name):
    make, shape, ref = LAYERS[name]
    dt = _dt(backend)
    layer = make().to(backend, dtype=dt)
    module = ref(torch.nn).double()
    if name.startswith("layernorm"):
        w, b = 1 + 0.3 * _x(module.weight.shape, 5), 0.1 * _x(module.bias.shape, 6)
        layer.params["weight"], layer.params["bias"] = w, b
        with torch.no_grad():
            module.weight.copy_(torch.tensor(w))
            module.bias.copy_(torch.tensor(b))
    x = _x(shape)
    y = layer.forward(backend.asarray(x, dtype=dt))
    tx = torch.tensor(x, requires_grad=True)
    ty = module(tx)
    if name == "globalavgpool":
        ty = ty.flatten(1)
    dy = _x(tuple(ty.shape), 1)
    dx = layer.backward(backend.asarray(dy, dtype=dt))
    ty.backward(torch.tensor(dy))
    tol = _tol(backend)
    assert_close(y, ty.detach().numpy(), rtol=tol, atol=tol)
    assert_close(dx, tx.grad.numpy(), rtol=tol, atol=tol)
    for key, param in getattr(module, "_parameters", {}).items():
        assert_close(layer.grads[key], param.grad.numpy(), rtol=tol, atol=tol)


def test_embedding_matches_torch(backend, torch):
    dt = _dt(backend)
    layer = portnn.Embedding(7, 3).to(backend, dtype=dt)
    module = torch.nn.Embedding(7, 3).double()
    with torch.no_grad():
        module.weight.copy_(torch.tensor(portnn.to_numpy(layer.params["weight"]).astype(np.float64)))
    y = layer.forward(backend.asarray(IDX, dtype=backend.index_dtype))
    ty = module(torch.tensor(IDX))
    dy = _x(tuple(ty.shape), 1)
    assert layer.backward(backend.asarray(dy, dtype=dt)) is None  # indices have no gradient
    ty.backward(torch.tensor(dy))
    assert_close(y, ty.detach().numpy(), rtol=_tol(backend), atol=_tol(backend))
    assert_close(layer.grads["weight"], module.weight.grad.numpy(), rtol=_tol(backend), atol=_tol(backend))


def test_embedding_repeated_rows_sum_on_every_route(backend):
    """The fast scatter-add of each library and the portable one-hot product give the same sums."""
    from portnn.backends import _fast as fast

    rows = backend.asarray(np.array([3, 0, 3, 3, 1]), dtype=backend.index_dtype)
    values = backend.asarray(np.arange(10.0).reshape(5, 2), dtype="float32")
    want = np.zeros((4, 2), np.float32)
    np.add.at(want, [3, 0, 3, 3, 1], np.arange(10.0, dtype=np.float32).reshape(5, 2))
    assert_close(fast.scatter_add_rows(4, rows, values), want)
    with fast.portable():
        assert_close(fast.scatter_add_rows(4, rows, values), want)


def _text_model():
    return portnn.Sequential([portnn.Embedding(10, 4), portnn.LayerNorm(4), portnn.Flatten(),
                              portnn.Dense(12, 2)], loss="crossentropy", optimizer=portnn.Adam(0.05))


def test_embedding_model_trains_saves_and_loads(backend, tmp_path):
    """Token sequences whose class is whether token 7 occurs: learned, saved, loaded on NumPy."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 10, (64, 3))
    y = (x == 7).any(axis=1).astype(np.int64)
    model = _text_model()
    history = model.fit(x, y, epochs=30, batch_size=16, verbose=0)
    assert history["accuracy"][-1] > 0.9, history["accuracy"][-5:]
    model.save(tmp_path / "m.npz")
    loaded = portnn.Sequential.load(tmp_path / "m.npz", backend="numpy")
    np.testing.assert_allclose(portnn.to_numpy(loaded.predict(x)), portnn.to_numpy(model.predict(x)),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad, found", [(np.array([[0, 1, 10]]), "10"), (np.array([[-1, 0, 2]]), "-1"),
                                        (np.array([[0.5, 1, 2]]), "0.5")])
def test_indices_out_of_range_are_a_clear_error(backend, bad, found):
    model = _text_model()
    message = rf"x must hold Embedding\(10, 4\) indices: integers in \[0, 10\); offending values: {found}"
    with pytest.raises(ValueError, match=message):
        model.predict(bad)
    with pytest.raises(ValueError, match=message):
        model.fit(np.vstack([bad, bad]), np.array([0, 1]), verbose=0)
    with pytest.raises(ValueError, match=r"Embedding\(10, 4\) indices"):
        model.layers[0](bad)


def test_bad_arguments_name_the_layer():
    with pytest.raises(ValueError, match=r"Embedding\(0, 4\).*num_embeddings"):
        portnn.Embedding(0, 4)
    with pytest.raises(ValueError, match=r"LayerNorm\(\(\)\): normalized_shape must name"):
        portnn.LayerNorm(())
    with pytest.raises(ValueError, match=r"LayerNorm\(5\) expects input of shape \(batch, ..., 5\), "
                                         r"got \(2, 4\)"):
        portnn.LayerNorm(5).forward(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"UpSampling2D\(\(1, 2, 3\)\): scale_factor must be"):
        portnn.UpSampling2D((1, 2, 3))
    with pytest.raises(TypeError, match=r"Embedding\(3, 2\) expects integer indices"):
        portnn.Embedding(3, 2).forward(np.ones((2, 2), np.float32))


TRANSPOSED = {"k3": (3, 1, 0, 0), "k2-s2": (2, 2, 0, 0), "k3-s2-p1-op1": (3, 2, 1, 1),
              "k3x2-s2x1-p1x0-op1x0": ((3, 2), (2, 1), (1, 0), (1, 0))}


@pytest.mark.parametrize("case", sorted(TRANSPOSED))
def test_conv_transpose_gradcheck(backend, case):
    k, s, p, op = TRANSPOSED[case]
    layer = portnn.Conv2DTranspose(2, 2, k, stride=s, padding=p, output_padding=op)
    layer.params["bias"] = np.array([0.3, -0.2])
    portnn.gradcheck(layer, _x((1, 2, 3, 3)))


@pytest.mark.parametrize("case", sorted(TRANSPOSED))
def test_conv_transpose_matches_torch(backend, torch, case):
    k, s, p, op = TRANSPOSED[case]
    dt = _dt(backend)
    layer = portnn.Conv2DTranspose(3, 2, k, stride=s, padding=p, output_padding=op).to(backend, dtype=dt)
    layer.params["bias"] = np.array([0.5, -1.0])
    module = torch.nn.ConvTranspose2d(3, 2, k, stride=s, padding=p, output_padding=op).double()
    with torch.no_grad():
        module.weight.copy_(torch.tensor(portnn.to_numpy(layer.params["weight"]).astype(np.float64)))
        module.bias.copy_(torch.tensor([0.5, -1.0]))
    x = _x((2, 3, 4, 5))
    y = layer.forward(backend.asarray(x, dtype=dt))
    tx = torch.tensor(x, requires_grad=True)
    ty = module(tx)
    dy = _x(tuple(ty.shape), 1)
    dx = layer.backward(backend.asarray(dy, dtype=dt))
    ty.backward(torch.tensor(dy))
    tol = _tol(backend)
    assert_close(y, ty.detach().numpy(), rtol=tol, atol=tol)
    assert_close(dx, tx.grad.numpy(), rtol=tol, atol=tol)
    assert_close(layer.grads["weight"], module.weight.grad.numpy(), rtol=tol, atol=tol)
    assert_close(layer.grads["bias"], module.bias.grad.numpy(), rtol=tol, atol=tol)


def test_conv_transpose_bad_arguments():
    with pytest.raises(ValueError, match=r"Conv2DTranspose\(1, 1\): output_padding \(2, 2\) must be smaller"):
        portnn.Conv2DTranspose(1, 1, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"Conv2DTranspose\(1, 1\): input of height x width 1x1 gives"):
        portnn.Conv2DTranspose(1, 1, 1, padding=1).forward(np.ones((1, 1, 1, 1), np.float32))

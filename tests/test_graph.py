"""Graph models (portnn.Model, Input, merge layers): finite differences, the same networks in
PyTorch step for step, fit with several inputs, checkpoints, summaries and bad graphs."""

import json

import numpy as np
import pytest

import portnn
from conftest import assert_close, has_float64


def _x(shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape)
    return np.where(np.abs(x) < 0.05, 0.3, x)  # away from ReLU's kink


# --------------------------------------------------------------------------- merge layers


@pytest.mark.parametrize("layer, shapes", [
    (portnn.Add, [(3, 4)] * 3),
    (portnn.Multiply, [(3, 4)] * 3),
    (portnn.Concatenate, [(3, 4), (3, 2)]),
    (lambda: portnn.Concatenate(axis=1), [(2, 3, 2, 2), (2, 1, 2, 2)]),
])
def test_merge_gradcheck(backend, layer, shapes):
    portnn.gradcheck(layer(), [_x(s, i) for i, s in enumerate(shapes)])


def test_merge_layers_against_torch(backend, torch):
    a, b = _x((2, 3, 4), 1), _x((2, 1, 4), 2)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    dy = _x((2, 4, 4), 3)
    out = torch.cat([ta, tb], dim=1)
    out.backward(torch.tensor(dy))
    cat = portnn.Concatenate(axis=-2)
    xs = [backend.asarray(v, dtype="float32") for v in (a, b)]
    assert_close(cat(xs), out.detach().numpy())
    for got, want in zip(cat.backward(backend.asarray(dy, dtype="float32")), (ta.grad, tb.grad), strict=True):
        assert_close(got, want.numpy())
    prod = portnn.Multiply()
    assert_close(prod([xs[0], xs[0]]), a * a)
    assert_close(portnn.Add()([xs[1], xs[1], xs[1]]), 3 * b, rtol=1e-6)


# --------------------------------------------------------------------------- against PyTorch


def _residual_mlp(nn):
    x = portnn.Input((4,))
    d_in, f1, f2, head = portnn.Dense(4, 8), portnn.Dense(8, 8), portnn.Dense(8, 8), portnn.Dense(8, 2)
    h = portnn.ReLU()(d_in(x))
    model = portnn.Model(x, head(portnn.Add()([h, f2(portnn.Tanh()(f1(h)))])))

    class Ref(nn.Module):
        def __init__(self):
            super().__init__()
            self.d_in, self.f1, self.f2 = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 8)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            h = self.d_in(x).relu()
            return self.head(h + self.f2(self.f1(h).tanh()))

    ref = Ref()
    return model, ref, [(d_in, ref.d_in), (f1, ref.f1), (f2, ref.f2), (head, ref.head)], [(5, 4)]


def _cnn_skip(nn):
    x = portnn.Input((2, 6, 6))
    c1, c2, c3 = (portnn.Conv2D(2, 3, 3, padding=1), portnn.Conv2D(3, 3, 3, padding=1),
                  portnn.Conv2D(3, 3, 3, padding=1))
    head = portnn.Dense(27, 2)
    h = portnn.ReLU()(c1(x))
    s = portnn.Add()([h, c3(portnn.ReLU()(c2(h)))])
    model = portnn.Model(x, head(portnn.Flatten()(portnn.MaxPool2D(2)(s))))

    class Ref(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.c3 = (nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1),
                                         nn.Conv2d(3, 3, 3, padding=1))
            self.head = nn.Linear(27, 2)

        def forward(self, x):
            h = self.c1(x).relu()
            s = h + self.c3(self.c2(h).relu())
            return self.head(nn.functional.max_pool2d(s, 2).flatten(1))

    ref = Ref()
    return model, ref, [(c1, ref.c1), (c2, ref.c2), (c3, ref.c3), (head, ref.head)], [(4, 2, 6, 6)]


def _two_inputs_shared_encoder(nn):
    """A siamese pair: one encoder (a nested Model) on both inputs, joined by Concatenate and Multiply."""
    i = portnn.Input((4,))
    enc_dense = portnn.Dense(4, 5)
    encoder = portnn.Model(i, portnn.Tanh()(enc_dense(i)))
    a, b = portnn.Input((4,)), portnn.Input((4,))
    ea, eb = encoder(a), encoder(b)
    head = portnn.Dense(15, 2)
    model = portnn.Model([a, b], head(portnn.Concatenate()([ea, eb, portnn.Multiply()([ea, eb])])))

    class Ref(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc, self.head = nn.Linear(4, 5), nn.Linear(15, 2)

        def forward(self, a, b):
            ea, eb = self.enc(a).tanh(), self.enc(b).tanh()
            return self.head(torch_cat([ea, eb, ea * eb]))

    ref = Ref()
    return model, ref, [(enc_dense, ref.enc), (head, ref.head)], [(5, 4), (5, 4)]


def _nested_sequential(nn):
    d1, d2, d3 = portnn.Dense(4, 6), portnn.Dense(6, 6), portnn.Dense(6, 2)
    model = portnn.Sequential([portnn.Sequential([d1, portnn.Tanh()]),
                               portnn.Sequential([d2, portnn.ReLU()]), d3])
    ref = nn.Sequential(nn.Sequential(nn.Linear(4, 6), nn.Tanh()), nn.Sequential(nn.Linear(6, 6), nn.ReLU()),
                        nn.Linear(6, 2))
    return model, ref, [(d1, ref[0][0]), (d2, ref[1][0]), (d3, ref[2])], [(5, 4)]


def _shared_three_times(nn):
    x = portnn.Input((4,))
    d, head = portnn.Dense(4, 4), portnn.Dense(4, 2)
    h = x
    for _ in range(3):
        h = portnn.Tanh()(d(h))
    model = portnn.Model(x, head(h))

    class Ref(nn.Module):
        def __init__(self):
            super().__init__()
            self.d, self.head = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            for _ in range(3):
                x = self.d(x).tanh()
            return self.head(x)

    ref = Ref()
    return model, ref, [(d, ref.d), (head, ref.head)], [(5, 4)]


def torch_cat(xs):
    import torch

    return torch.cat(xs, dim=1)


CASES = {"residual_mlp": _residual_mlp, "cnn_skip": _cnn_skip, "two_inputs_shared_encoder":
         _two_inputs_shared_encoder, "nested_sequential": _nested_sequential,
         "shared_three_times": _shared_three_times}


def _torch_param(module, key, nn):
    w = getattr(module, key)
    return w.T if isinstance(module, nn.Linear) and key == "weight" else w


@pytest.mark.parametrize("case", CASES)
def test_matches_torch_step_for_step(backend, torch, case):
    """Weights copied into the same network in PyTorch; 3 SGD-momentum steps by each: the same
    losses and weights (float64: 1e-10), and the summary's parameter count is PyTorch's."""
    nn = torch.nn
    dt = "float64" if has_float64(backend) else "float32"
    tol = 1e-10 if dt == "float64" else 1e-4
    model, ref, pairs, shapes = CASES[case](nn)
    model.loss, model.optimizer = portnn.CrossEntropy(), portnn.SGD(0.1, momentum=0.9)
    model.to(dtype=dt)
    ref = ref.double()
    with torch.no_grad():
        for layer, module in pairs:
            for key in layer.params:
                _torch_param(module, key, nn).copy_(torch.tensor(portnn.to_numpy(layer.params[key])))
    opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    xs = [_x(s, i) for i, s in enumerate(shapes)]
    y = np.array([0, 1, 1, 0, 1])[:shapes[0][0]]
    xb, yb = model.prepare_inputs(xs if len(xs) > 1 else xs[0], y)
    for _ in range(3):
        loss, _ = model.train_step(xb, yb)
        opt.zero_grad()
        ref_loss = nn.functional.cross_entropy(ref(*map(torch.tensor, xs)), torch.tensor(y))
        ref_loss.backward()
        opt.step()
        assert abs(float(loss) - ref_loss.item()) < tol
    for layer, module in pairs:
        for key in layer.params:
            want = _torch_param(module, key, nn).detach().numpy()
            assert_close(layer.params[key], want, rtol=tol, atol=tol)
    table = model.summary(input_shape=shapes[0][1:])
    assert f"Trainable params: {sum(p.numel() for p in ref.parameters()):,} " in table


# --------------------------------------------------------------------------- fit, save, load


def _siamese(embedding=8):
    a, b = portnn.Input((6,), name="left"), portnn.Input((6,), name="right")
    encoder = portnn.Sequential([portnn.Dense(6, embedding), portnn.Tanh()])
    joined = portnn.Multiply()([encoder(a), encoder(b)])
    out = portnn.Dense(embedding, 2)(joined)
    return portnn.Model([a, b], out, loss="crossentropy", optimizer=portnn.Adam(0.03))


def _pairs(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.standard_normal((n, 6)), rng.standard_normal((n, 6))
    same = np.sign(x1[:, 0]) == np.sign(x2[:, 0])
    return [x1.astype(np.float32), x2.astype(np.float32)], same.astype(np.int64)


def test_two_input_model_fits_evaluates_predicts(backend):
    """fit([x1, x2], y) with validation data, class weights and a callback (compiled on JAX)."""
    x, y = _pairs()
    model = _siamese()
    seen = []
    history = model.fit(x, y, epochs=40, batch_size=32, verbose=0, validation_data=_pairs(32, 1),
                        class_weight={0: 1.0, 1: 1.0}, callbacks=[lambda m, e, logs: seen.append(e)])
    assert history["accuracy"][-1] > 0.9 and seen == list(range(40))
    assert history["val_accuracy"][-1] > 0.8
    assert model.evaluate(*_pairs(32, 1))["accuracy"] == pytest.approx(history["val_accuracy"][-1])
    whole = portnn.to_numpy(model.predict(x))
    assert_close(model.predict(x, batch_size=7), whole, rtol=1e-5, atol=1e-5)
    assert whole.shape == (96, 2)


def test_compiled_equals_eager_on_jax():
    """On JAX the graph's training step compiles into one program: it equals the eager run."""
    pytest.importorskip("jax")
    runs = []
    for jit in (False, True):
        portnn.seed(0)
        with portnn.use_backend("jax"):
            model = _siamese()
            history = model.fit(*_pairs(), epochs=3, batch_size=32, verbose=0, jit=jit)
            runs.append((history["loss"], [portnn.to_numpy(owner.params[k]) for _, owner, k in
                                           model.named_parameters()]))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-5)
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_save_load_keeps_the_graph(backend, tmp_path):
    x, y = _pairs(32)
    model = _siamese()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:
        meta = json.loads(str(f["__portnn__"]))
    assert meta["model"] == "Model" and [i["name"] for i in meta["graph"]["inputs"]] == ["left", "right"]
    assert [n["layer"] for n in meta["graph"]["nodes"]] == [0, 0, 1, 2]  # the encoder twice
    loaded = portnn.Model.load(tmp_path / "m.npz", backend="numpy")
    assert loaded.nodes[0].layer is loaded.nodes[1].layer
    assert_close(loaded.predict(x), portnn.to_numpy(model.predict(x)), rtol=1e-5, atol=1e-6)
    assert loaded.optimizer.t == model.optimizer.t
    again = loaded.fit(x, y, epochs=1, batch_size=16, verbose=0)  # the optimizer state goes on
    assert np.isfinite(again["loss"][0])
    with pytest.raises(portnn.CheckpointError, match="holds a Model, not a Sequential"):
        portnn.Sequential.load(tmp_path / "m.npz")


def test_nested_graph_model_saves_and_loads(tmp_path):
    i = portnn.Input((3,))
    encoder = portnn.Model(i, portnn.ReLU()(portnn.Dense(3, 4)(i)))
    model = portnn.Sequential([encoder, portnn.Dense(4, 1)], loss="mse", optimizer="sgd")
    model.save(tmp_path / "n.npz")
    loaded = portnn.Sequential.load(tmp_path / "n.npz")
    assert isinstance(loaded.layers[0], portnn.Model)
    xs = _x((5, 3)).astype(np.float32)
    assert_close(loaded.predict(xs), portnn.to_numpy(model.predict(xs)))


def test_shared_layer_keeps_a_cache_per_call(backend):
    """A Dropout used twice: each call's mask is used by its own backward (a cache per node)."""
    x = portnn.Input((50,))
    drop = portnn.Dropout(0.5)
    model = portnn.Model(x, portnn.Add()([drop(x), drop(x)]))
    xs = backend.asarray(np.ones((4, 50)), dtype="float32")
    y = model.forward(xs, training=True)
    dx = model.backward(backend.asarray(np.ones((4, 50)), dtype="float32"))
    # y = (m1 + m2) * 2 elementwise and dx is the same sum of the two masks: equal only if each
    # backward used its own call's mask.
    assert_close(dx, portnn.to_numpy(y))
    assert not np.allclose(portnn.to_numpy(y), 2.0)


def test_summary_shows_branches():
    model = _siamese()
    table = model.summary()
    assert "left" in table and "right" in table and "Connected to" in table
    assert "0: Sequential (call 2)" in table and "shared" in table
    assert "2: Dense" in table and "1: Multiply" in table


def test_a_graph_deeper_than_the_recursion_limit_builds_and_runs():
    import sys

    x = h = portnn.Input((2,))
    relu = portnn.ReLU()
    for _ in range(sys.getrecursionlimit() + 100):
        h = relu(h)  # a node per call: deeper than Python's stack allows
    model = portnn.Model(x, portnn.Add()([h, x]))
    y = model.forward(np.array([[1.0, -1.0]]))
    np.testing.assert_array_equal(np.asarray(y), [[2.0, -1.0]])
    np.testing.assert_array_equal(np.asarray(model.backward(np.ones((1, 2)))), [[2.0, 1.0]])


# --------------------------------------------------------------------------- bad graphs and inputs


def test_layer_that_cannot_take_its_input_names_it():
    x = portnn.Input((4,))
    with pytest.raises(ValueError, match=r"Dense: cannot take an input of shape \(None, 4\)"):
        portnn.Dense(5, 2)(x)
    with pytest.raises(ValueError, match=r"Add: .*inputs must have the same shape.*\(1, 3\)"):
        portnn.Add()([portnn.Dense(4, 3)(x), x])
    with pytest.raises(ValueError, match="axis 0 is the batch axis"):
        portnn.Concatenate(axis=0)([x, x])
    with pytest.raises(TypeError, match="takes a list of at least two inputs"):
        portnn.Add()([x])


def test_bad_graphs_are_clear_errors():
    a, b, c = portnn.Input((4,)), portnn.Input((4,)), portnn.Input((4,))
    out = portnn.Dense(4, 1)(portnn.Add()([a, b]))
    with pytest.raises(ValueError, match=r"inputs\[1\] do not reach the output"):
        portnn.Model([a, c], portnn.Dense(4, 1)(a))
    with pytest.raises(ValueError, match="which is not in inputs"):
        portnn.Model(a, out)
    with pytest.raises(ValueError, match="the output is an Input itself"):
        portnn.Model(a, a)
    with pytest.raises(ValueError, match="a model has one output"):
        portnn.Model([a, b], [out, portnn.Dense(4, 1)(a)])
    with pytest.raises(TypeError, match="must be a tensor made by portnn.Input"):
        portnn.Model(out, out)
    with pytest.raises(TypeError, match="mix of symbolic tensors and arrays"):
        portnn.Add()([a, np.ones((1, 4))])
    with pytest.raises(TypeError, match="Input: shape must be a tuple"):
        portnn.Input("784")


def test_several_inputs_take_a_list_of_fitting_arrays():
    a, b = portnn.Input((4,)), portnn.Input((3,))
    model = portnn.Model([a, b], portnn.Dense(7, 1)(portnn.Concatenate()([a, b])), loss="mse",
                         optimizer="sgd")
    x1, x2, y = np.ones((8, 4)), np.ones((8, 3)), np.ones((8, 1))
    with pytest.raises(ValueError, match=r"the model has 2 inputs, so pass a list of 2 arrays.*got a nd"):
        model.fit(x1, y, verbose=0)
    with pytest.raises(ValueError, match="got a list of 3"):
        model.fit([x1, x2, x2], y, verbose=0)
    with pytest.raises(ValueError, match=r"x\[1\]: samples of shape \(4,\) do not fit the model's Input "
                                         r"of shape \(3,\)"):
        model.fit([x1, x1], y, verbose=0)
    with pytest.raises(ValueError, match=r"x\[1\] has 7 samples but x\[0\] has 8"):
        model.fit([x1, x2[:7]], y, verbose=0)
    with pytest.raises(ValueError, match="Model.fit: batch_size must be"):  # names Model, not Sequential
        model.fit([x1, x2], y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match=r"Model.fit needs a loss and an optimizer: pass Model\(\.\.\."):
        portnn.Model([a, b], portnn.Concatenate()([a, b])).fit([x1, x2], y, verbose=0)
    with pytest.raises(ValueError, match="x has 8 samples but y has 7"):
        model.fit([x1, x2], y[:7], verbose=0)
    with pytest.raises(ValueError, match=r"validation_data x\[0\] holds NaN"):
        model.fit([x1, x2], y, verbose=0, validation_data=([x1 * np.nan, x2], y))
    with pytest.raises(TypeError, match="takes 2 inputs"):
        model.forward(np.ones((2, 4)))


def test_variable_sizes_and_an_embedding_input(backend):
    """Input((None,)) for a sequence of any length into an Embedding: the data boundary checks
    the indices of that input, and the output shape keeps the varying size as None."""
    tokens, extra = portnn.Input((None,)), portnn.Input((2,))
    seq = portnn.LSTM(3, 4)(portnn.Embedding(10, 3)(tokens))
    assert seq.shape == (4,)
    model = portnn.Model([tokens, extra], portnn.Dense(6, 2)(portnn.Concatenate()([seq, extra])),
                         loss="crossentropy", optimizer="adam")
    ids = np.random.default_rng(0).integers(0, 10, size=(8, 5))
    history = model.fit([ids, np.ones((8, 2))], np.arange(8) % 2, epochs=2, verbose=0)
    assert np.isfinite(history["loss"][-1])
    with pytest.raises(ValueError, match=r"x\[0\] must hold Embedding\(10, 3\) indices: integers in \[0"):
        model.predict([ids + 10, np.ones((8, 2))])


def test_backup_and_restore_resumes_a_graph_model(backend, tmp_path):
    """A two-input fit killed (an exception) after 2 of 4 epochs and resumed by a fresh model
    ends where the uninterrupted one does, bit for bit."""

    class Stop(Exception):
        pass

    def train(model, callbacks):
        return model.fit(*_pairs(48), epochs=4, batch_size=16, verbose=0, callbacks=callbacks)

    def stop_at_2(model, epoch, logs):
        if epoch == 2:
            raise Stop

    portnn.seed(0)
    reference = _siamese()
    expected = train(reference, [])
    portnn.seed(0)
    with pytest.raises(Stop):
        train(_siamese(), [portnn.callbacks.BackupAndRestore(tmp_path), stop_at_2])
    portnn.seed(5)
    resumed = _siamese()
    history = train(resumed, [portnn.callbacks.BackupAndRestore(tmp_path)])
    assert history["loss"] == expected["loss"]
    for (_, a, k), (_, b, _) in zip(resumed.named_parameters(), reference.named_parameters(), strict=True):
        np.testing.assert_array_equal(portnn.to_numpy(a.params[k]), portnn.to_numpy(b.params[k]))

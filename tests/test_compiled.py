"""Compiled training steps, ``fit(jit=...)``: one program per step that trains as the eager step does."""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn.backends import unavailable_reason
from portnn.training import runner

JAX = unavailable_reason("jax")


@pytest.fixture
def jax_cpu():
    if JAX is not None:
        pytest.skip(f"jax-cpu unavailable: {JAX}")
    with portnn.use_backend("jax", "cpu") as be:
        yield be


OPTIMIZERS = {
    "sgd-nesterov-l2": lambda: portnn.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam-step": lambda: portnn.Adam(portnn.StepDecay(0.01, step_size=2, gamma=0.5)),
    "adamw-clipnorm": lambda: portnn.AdamW(0.01, clipnorm=0.5),
    "rmsprop-clipvalue": lambda: portnn.RMSProp(0.01, clipvalue=0.05),
}


def _mlp(optimizer):
    """bench_mlp.py's model."""
    return portnn.Sequential([portnn.Dense(784, 256), portnn.ReLU(), portnn.Dense(256, 128), portnn.ReLU(),
                              portnn.Dense(128, 10)], loss="crossentropy", optimizer=optimizer)


def _cnn(optimizer):
    """bench_cnn.py's model."""
    return portnn.Sequential([
        portnn.Conv2D(1, 16, 3, padding=1), portnn.ReLU(), portnn.MaxPool2D(2),
        portnn.Conv2D(16, 32, 3, padding=1), portnn.ReLU(), portnn.MaxPool2D(2),
        portnn.Flatten(), portnn.Dense(32 * 7 * 7, 10)], loss="crossentropy", optimizer=optimizer)


def _weights(model):
    arrays = {path: portnn.to_numpy(owner.params[key]) for path, owner, key in model.named_parameters()}
    arrays.update({path: portnn.to_numpy(owner.buffers[key]) for path, owner, key in model.named_buffers()})
    for path, state in model.optimizer.state.items():
        arrays.update({f"opt/{path}/{k}": portnn.to_numpy(v) for k, v in state.items()})
    return arrays


def _train(make, jit, x, y, **fit):
    portnn.seed(0)
    model = make()
    history = model.fit(x, y, verbose=0, jit=jit, **fit)
    return model, history


def _assert_same_training(a, b, tol=1e-5):
    (ma, ha), (mb, hb) = a, b
    wa, wb = _weights(ma), _weights(mb)
    assert wa.keys() == wb.keys()
    for key in wa:
        np.testing.assert_allclose(wa[key], wb[key], rtol=tol, atol=tol, err_msg=key)
    assert ha.keys() == hb.keys()
    for key in ha:
        np.testing.assert_allclose(ha[key], hb[key], rtol=tol, atol=tol, err_msg=key)
    assert (ma.optimizer.t, ma.optimizer.epoch) == (mb.optimizer.t, mb.optimizer.epoch)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_compiled_equals_eager_over_100_steps(jax_cpu, model, name):
    """The benchmark models, 100 steps with each optimizer (schedules, L2, clipping): compiled and
    eager agree to 1e-5 in weights, optimizer state and every logged value.

    In float64 (``jax.enable_x64``): in float32, XLA's fused step rounds differently from the same ops
    one by one (1 ulp after a step), and on random labels Adam amplifies that to 1e-4 in 100 steps.
    """
    import jax

    rng = np.random.default_rng(0)
    batch = 8
    shape = (784,) if model == "mlp" else (1, 28, 28)
    x = rng.standard_normal((100 * batch // 4, *shape))  # 4 epochs of 25 steps
    y = rng.integers(0, 10, x.shape[0])

    def make():
        return (_mlp if model == "mlp" else _cnn)(OPTIMIZERS[name]()).to(dtype="float64")

    with jax.enable_x64(True):
        eager, compiled = _train(make, False, x, y, epochs=4, batch_size=batch), _train(
            make, True, x, y, epochs=4, batch_size=batch)
        assert compiled[0].optimizer.t == 100
        assert str(compiled[0].layers[0].params["weight"].dtype) == "float64"
        _assert_same_training(eager, compiled)


def test_compiled_equals_eager_in_float32_for_a_step(jax_cpu):
    """float32, no x64: one step of the benchmark MLP agrees to rounding (a few ulp)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 784)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    _assert_same_training(_train(lambda: _mlp(portnn.Adam(0.01)), False, x, y),
                          _train(lambda: _mlp(portnn.Adam(0.01)), True, x, y), tol=1e-6)


def test_dropout_batchnorm_weights_and_callbacks_compiled_as_eager(jax_cpu):
    """One seed, the same dropout masks compiled or eager; BatchNorm's running statistics, class
    weights, a short last batch, validation, EarlyStopping and ReduceLROnPlateau as well."""
    import jax

    rng = np.random.default_rng(1)
    x = rng.standard_normal((90, 6))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)
    xv, yv = x[:20] + 0.1, y[:20]

    def make():
        # (BatchNorm after the ReLU: right after a Dense it leaves that bias no gradient but rounding,
        # which Adam would scale up to steps of lr.)
        return portnn.Sequential([portnn.Dense(6, 16), portnn.ReLU(), portnn.BatchNorm(16),
                                  portnn.Dropout(0.3), portnn.Dense(16, 3)], loss="crossentropy",
                                 optimizer=portnn.Adam(0.02, global_clipnorm=1.0),
                                 metrics=["accuracy"]).to(dtype="float64")

    def fit_kwargs():
        return dict(epochs=5, batch_size=16, class_weight={0: 1.0, 1: 2.0, 2: 0.5}, validation_data=(xv, yv),
                    callbacks=[portnn.callbacks.ReduceLROnPlateau(monitor="loss", patience=0, factor=0.5),
                               portnn.callbacks.EarlyStopping(monitor="val_loss", patience=10)])

    with jax.enable_x64(True):
        eager, compiled = _train(make, False, x, y, **fit_kwargs()), _train(make, None, x, y, **fit_kwargs())
        _assert_same_training(eager, compiled)
    assert compiled[0].optimizer.lr == eager[0].optimizer.lr  # the plateau callback saw the same losses


def test_one_trace_per_batch_shape_not_per_epoch_or_rate(jax_cpu, monkeypatch):
    """A schedule and a callback changing the rate retrace nothing: the first batch of an epoch (it
    starts the sums), the others, and the short last batch are the only programs."""
    traces = []
    pure = runner.Compiled._pure

    def counting(self, *args):
        traces.append(tuple(args[5].shape))  # the batch's rows
        return pure(self, *args)

    monkeypatch.setattr(runner.Compiled, "_pure", counting)
    x = np.random.default_rng(2).standard_normal((50, 3)).astype(np.float32)
    for lr, callbacks in [(portnn.ExponentialDecay(0.1, 0.5), []),
                          (0.1, [portnn.callbacks.ReduceLROnPlateau(monitor="loss", patience=0)])]:
        traces.clear()
        model = portnn.Sequential([portnn.Dense(3, 4), portnn.Tanh(), portnn.Dense(4, 1)], loss="mse",
                                  optimizer=portnn.SGD(lr, momentum=0.9))
        model.fit(x, x[:, :1], epochs=4, batch_size=16, verbose=0, callbacks=callbacks)
        assert sorted(traces) == [(2,), (16,), (16,)], traces
        assert model.optimizer.t == 16 and isinstance(model.optimizer.t, int)
        assert model.optimizer.current_lr < 0.1  # the rate did change, without a new program


def test_batch_by_batch_programs_train_as_the_epoch_program(jax_cpu, monkeypatch):
    """A per-batch display or data-parallel training runs one program per batch instead of one per
    epoch: the same training."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((45, 5)).astype(np.float32)
    y = rng.integers(0, 3, 45)

    def make():
        return portnn.Sequential([portnn.Dense(5, 8), portnn.ReLU(), portnn.Dropout(0.2), portnn.Dense(8, 3)],
                                 loss="crossentropy", optimizer=portnn.SGD(0.1, momentum=0.9))

    fit = dict(epochs=3, batch_size=10, class_weight={0: 1.0, 1: 0.5, 2: 2.0})
    whole = _train(make, True, x, y, **fit)
    monkeypatch.setattr(runner.Compiled, "whole_epoch", lambda self, *args: None)
    _assert_same_training(_train(make, True, x, y, **fit), whole, tol=1e-6)


def test_compiled_state_is_donated_and_nothing_traced_stays_behind(jax_cpu):
    x = np.random.default_rng(3).standard_normal((8, 3)).astype(np.float32)
    model = portnn.Sequential([portnn.Dense(3, 2)], loss="mse", optimizer=portnn.Adam(0.1))
    before = model.layers[0].params["weight"]
    model.fit(x, x[:, :2], epochs=2, verbose=0)
    assert before.is_deleted()  # its memory became the new weight's
    layer = model.layers[0]
    assert not layer.backend.library.is_traced(layer.params["weight"])
    assert not any(layer.backend.library.is_traced(v) for v in vars(layer).values())
    state = model.optimizer.state["0.weight"]
    assert not any(layer.backend.library.is_traced(v) for v in state.values())
    assert not (layer.backend.library.is_traced(model.optimizer.t) or model.optimizer._traced_lr is not None)
    portnn.to_numpy(model.predict(x))  # and it still predicts


def test_jit_true_needs_a_backend_that_compiles(backend):
    x = np.zeros((4, 2), np.float32)
    model = portnn.Sequential([portnn.Dense(2, 1)], loss="mse", optimizer=portnn.SGD(0.1))
    with pytest.raises(TypeError, match="jit must be None, True or False"):
        model.fit(x, x[:, :1], verbose=0, jit="yes")
    if backend.library.compiles:
        model.fit(x, x[:, :1], verbose=0, jit=True)
        assert model.optimizer.t == 1
    else:
        with pytest.raises(ValueError, match=rf"jit=True\): the {backend.name} backend does not compile"):
            model.fit(x, x[:, :1], verbose=0, jit=True)
        assert model.optimizer.t == 0  # refused before any step
        model.fit(x, x[:, :1], verbose=0, jit=None)  # None: eager here
        assert model.optimizer.t == 1


def test_a_later_fit_reuses_the_programs_unless_something_frozen_changed(jax_cpu, monkeypatch):
    traces = []
    pure = runner.Compiled._pure

    def counting(self, *args):
        traces.append(1)
        return pure(self, *args)

    monkeypatch.setattr(runner.Compiled, "_pure", counting)
    x = np.random.default_rng(5).standard_normal((32, 3)).astype(np.float32)
    model = portnn.Sequential([portnn.Dense(3, 4), portnn.Dropout(0.5), portnn.Dense(4, 1)], loss="mse",
                              optimizer=portnn.SGD(0.1, momentum=0.9))
    model.fit(x, x[:, :1], epochs=1, batch_size=16, verbose=0)
    first = len(traces)
    for _ in range(3):  # one epoch per call, as a notebook does
        model.fit(x, x[:, :1], epochs=1, batch_size=16, verbose=0)
    assert len(traces) == first
    model.layers[1].p = 0.0  # frozen into the program: a new one
    model.fit(x, x[:, :1], epochs=1, batch_size=16, verbose=0)
    assert len(traces) > first
    import copy

    assert "_compiled" not in vars(copy.deepcopy(model))

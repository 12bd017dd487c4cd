"""Every optimizer on arrays that cannot change in place (as JAX's), against NumPy step for step.

``Frozen`` is a NumPy array whose in-place operators return ``NotImplemented``, so
``x *= a`` falls back to ``x = x * a`` and rebinds a name, as on JAX, and whose
``__setitem__`` raises. An update that relied on an array changing behind its name
would leave the parameters or the state as they were; here they must move exactly
as NumPy's do, and the arrays handed in must stay as they were.
"""

import numpy as np
import pytest

import portnn


class Frozen(np.ndarray):
    def __imul__(self, other):
        return NotImplemented

    __iadd__ = __isub__ = __itruediv__ = __imul__

    def __setitem__(self, key, value):
        raise TypeError("Frozen arrays cannot change")


def frozen(a):
    return np.array(a, dtype=np.float64).view(Frozen)


rng = np.random.default_rng(0)
SHAPES = {"0.weight": (3, 4), "0.bias": (4,), "2.weight": (4, 2)}
W0 = {path: rng.standard_normal(shape) for path, shape in SHAPES.items()}
GRADS = [{path: rng.standard_normal(shape) for path, shape in SHAPES.items()} for _ in range(4)]

OPTIMIZERS = {
    "sgd": lambda **c: portnn.SGD(0.1, **c),
    "sgd_momentum": lambda **c: portnn.SGD(0.1, momentum=0.9, **c),
    "sgd_nesterov": lambda **c: portnn.SGD(0.1, momentum=0.8, nesterov=True, **c),
    "sgd_weight_decay": lambda **c: portnn.SGD(0.1, momentum=0.9, weight_decay=0.1, **c),
    "adam": lambda **c: portnn.Adam(0.05, betas=(0.8, 0.95), **c),
    "adam_l2": lambda **c: portnn.Adam(0.05, weight_decay=0.1, **c),
    "adamw": lambda **c: portnn.AdamW(0.05, weight_decay=0.1, **c),
    "rmsprop": lambda **c: portnn.RMSProp(0.05, alpha=0.9, weight_decay=0.1, **c),
}
CLIPS = {"unclipped": {}, "clipnorm": {"clipnorm": 0.5}, "global_clipnorm": {"global_clipnorm": 0.8},
         "clipvalue": {"clipvalue": 0.3}}


def _layers(wrap):
    layers = [portnn.Dense(3, 4, dtype="float64"), portnn.ReLU(), portnn.Dense(4, 2, bias=False,
                                                                               dtype="float64")]
    for path, value in W0.items():
        i, key = path.split(".")
        layers[int(i)].params.adopt({**layers[int(i)].params, key: wrap(value)})
    return layers


def _params(layers):
    return {f"{i}.{k}": v for i in (0, 2) for k, v in layers[i].params.items()}


def _steps(optimizer, layers, wrap):
    """Four steps through ``step(layers)``; yields the parameters and the state after each."""
    for grads in GRADS:
        for i in (0, 2):
            layers[i].grads = {key: wrap(grads[f"{i}.{key}"]) for key in layers[i].params}
        optimizer.step(layers)
        yield _params(layers), optimizer.state


def test_the_stand_in_cannot_change():
    a = frozen([1.0, 2.0])
    b = a
    b *= 3.0
    b += 1.0
    assert b is not a and isinstance(b, Frozen)
    np.testing.assert_array_equal(a, [1.0, 2.0])
    np.testing.assert_array_equal(b, [4.0, 7.0])
    with pytest.raises(TypeError):
        a[0] = 5.0


@pytest.mark.parametrize("clip", list(CLIPS))
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_steps_on_immutable_arrays_match_numpy(name, clip):
    make, host = OPTIMIZERS[name], lambda a: np.array(a, dtype=np.float64)
    layers = _layers(frozen)
    seen = list(_params(layers).values())
    reference = _steps(make(**CLIPS[clip]), _layers(host), host)
    for step, ((got, state), (want, want_state)) in enumerate(
            zip(_steps(make(**CLIPS[clip]), layers, frozen), reference, strict=True)):
        where = f"{name}/{clip} after step {step + 1}"
        for path, value in got.items():
            assert isinstance(value, Frozen), where
            assert all(value is not old for old in seen), f"{where}: {path} was not replaced"
            np.testing.assert_array_equal(np.asarray(value), want[path], err_msg=f"{where}: {path}")
            assert not np.array_equal(np.asarray(value), W0[path]), f"{where}: {path} did not move"
        seen += list(got.values())
        assert state.keys() == want_state.keys(), where
        for path, entries in state.items():
            assert entries.keys() == want_state[path].keys(), where
            for key, value in entries.items():
                assert isinstance(value, Frozen), f"{where}: state {path}/{key}"
                np.testing.assert_array_equal(np.asarray(value), want_state[path][key],
                                              err_msg=f"{where}: state {path}/{key}")
    assert step == len(GRADS) - 1
    for path, value in zip(SHAPES, seen[:len(SHAPES)], strict=True):  # the arrays handed in
        np.testing.assert_array_equal(np.asarray(value), W0[path])


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_starts_at_zeros_before_the_first_step(name):
    optimizer = OPTIMIZERS[name]()
    params = [frozen(W0[path]) for path in SHAPES]
    optimizer.init_state(list(SHAPES), params)
    assert list(optimizer.state) == list(SHAPES)
    for path, entries in optimizer.state.items():
        assert set(entries) == set(optimizer.slots)
        for value in entries.values():
            assert value.shape == SHAPES[path] and not np.any(np.asarray(value))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_fit_on_numpy_still_updates_in_place(name):
    portnn.seed(0)
    model = portnn.Sequential([portnn.Dense(3, 4), portnn.Tanh(), portnn.Dense(4, 1)], loss="mse",
                              optimizer=OPTIMIZERS[name](clipnorm=1.0))
    params = {path: layer.params[key] for path, layer, key in model.named_parameters()}
    before = {path: value.copy() for path, value in params.items()}
    x = rng.standard_normal((16, 3)).astype(np.float32)
    model.fit(x, x[:, :1] - x[:, 1:2], epochs=2, batch_size=4, verbose=0)
    assert model.layers[0].params["weight"] is params["0.weight"]
    for path, layer, key in model.named_parameters():
        assert layer.params[key] is params[path], f"{name}: {path} was replaced, not updated in place"
        assert not np.array_equal(layer.params[key], before[path]), f"{name}: {path} did not move"
    state = [a for entries in model.optimizer.state.values() for a in entries.values()]
    assert all(type(a) is np.ndarray for a in state)

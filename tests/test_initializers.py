"""Initializers: the distributions' bounds and spread, names, and one seed -> one set of weights."""

import math

import numpy as np
import pytest

import portnn
from portnn import initializers

FAN_IN, FAN_OUT = 300, 500  # 150,000 draws: the sample std is within ~0.2% of the truth
SHAPE = (FAN_IN, FAN_OUT)

# name -> (uniform limit or None, standard deviation), the formulas of torch.nn.init.
EXPECTED = {
    "glorot_uniform": (math.sqrt(6 / (FAN_IN + FAN_OUT)), math.sqrt(2 / (FAN_IN + FAN_OUT))),
    "glorot_normal": (None, math.sqrt(2 / (FAN_IN + FAN_OUT))),
    "he_uniform": (math.sqrt(6 / FAN_IN), math.sqrt(2 / FAN_IN)),
    "he_normal": (None, math.sqrt(2 / FAN_IN)),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_distribution(name):
    limit, std = EXPECTED[name]
    w = initializers.get(name)(SHAPE, FAN_IN, FAN_OUT)
    assert w.shape == SHAPE and w.dtype == np.float32
    assert abs(w.mean()) < 0.01 * std
    assert w.std() == pytest.approx(std, rel=0.01)
    if limit is None:
        # A normal: about 68.3% within one std, and not truncated (some beyond 3 std).
        assert np.mean(np.abs(w) < std) == pytest.approx(0.6827, abs=0.01)
        assert np.abs(w).max() > 3 * std
    else:
        assert np.abs(w).max() <= limit
        assert np.abs(w).max() > 0.999 * limit  # fills the whole interval
        assert np.histogram(w, bins=10, range=(-limit, limit))[0].min() > 0.09 * w.size


@pytest.mark.parametrize("name", list(EXPECTED))
def test_std_matches_torch_init(torch, name):
    """Same formulas as torch.nn.init (Xavier = Glorot, Kaiming fan_in/relu = He)."""
    init = torch.nn.init
    ref = {
        "glorot_uniform": init.xavier_uniform_, "glorot_normal": init.xavier_normal_,
        "he_uniform": lambda t: init.kaiming_uniform_(t, nonlinearity="relu"),
        "he_normal": lambda t: init.kaiming_normal_(t, nonlinearity="relu"),
    }[name]
    torch.manual_seed(0)
    # torch's weight layout is (out, in): transpose so the fans agree.
    want = ref(torch.empty(FAN_OUT, FAN_IN, dtype=torch.float64)).numpy()
    got = initializers.get(name)(SHAPE, FAN_IN, FAN_OUT)
    assert got.std() == pytest.approx(want.std(), rel=0.02)
    assert np.abs(got).max() == pytest.approx(np.abs(want).max(), rel=0.1)


@pytest.mark.parametrize("name", [*EXPECTED, "zeros"])
def test_same_seed_same_weights_on_every_backend(backend, name):
    def build():
        portnn.seed(42)
        return portnn.Dense(7, 5, init=name)

    with portnn.use_backend("numpy"):
        want = portnn.to_numpy(build().params["weight"])
    layer = build()
    got = layer.params["weight"]
    assert portnn.backends.backend_of(got) == backend
    np.testing.assert_array_equal(portnn.to_numpy(got), want)  # bit-identical
    portnn.seed(43)
    assert name == "zeros" or not np.array_equal(
        portnn.to_numpy(portnn.Dense(7, 5, init=name).params["weight"]), want)


def test_seed_makes_draws_repeatable():
    portnn.seed(5)
    a = initializers.he_normal((4, 3), 4, 3)
    b = initializers.he_normal((4, 3), 4, 3)
    portnn.seed(5)
    np.testing.assert_array_equal(initializers.he_normal((4, 3), 4, 3), a)
    assert not np.array_equal(a, b)  # successive draws differ


def test_names_resolve():
    for name in EXPECTED:
        assert initializers.get(name) is getattr(initializers, name)
        assert initializers.get(name.upper()) is getattr(initializers, name)
    assert initializers.get("xavier_uniform") is initializers.glorot_uniform
    assert initializers.get("kaiming_normal") is initializers.he_normal
    assert initializers.get("zeros") is initializers.zeros
    custom = lambda shape, fan_in, fan_out: np.ones(shape, np.float32)  # noqa: E731
    assert initializers.get(custom) is custom
    assert (portnn.to_numpy(portnn.Dense(2, 3, init=custom).params["weight"]) == 1).all()


def test_unknown_name_errors():
    with pytest.raises(ValueError, match=r"unknown initializer 'he_norml'.*'he_normal'"):
        initializers.get("he_norml")
    with pytest.raises(ValueError, match="unknown initializer"):
        portnn.Dense(2, 3, init="gaussian")
    with pytest.raises(TypeError, match="initializer"):
        initializers.get(0.1)

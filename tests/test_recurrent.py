"""SimpleRNN, LSTM, GRU: finite differences, torch.nn's RNN/LSTM/GRU step for step, training."""

import numpy as np
import pytest

import portnn
from conftest import assert_close, has_float64

CELLS = {"rnn": (portnn.SimpleRNN, "RNN"), "lstm": (portnn.LSTM, "LSTM"), "gru": (portnn.GRU, "GRU")}
KEYS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


@pytest.mark.parametrize("sequences", [False, True])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_gradcheck(backend, cell, sequences):
    x = np.random.default_rng(0).standard_normal((2, 3, 2))
    portnn.gradcheck(CELLS[cell][0](2, 3, return_sequences=sequences), x)


@pytest.mark.parametrize("sequences", [False, True])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_matches_torch(backend, torch, cell, sequences):
    """PyTorch's layout and gate order: its weights copied in, the same outputs and gradients."""
    make, name = CELLS[cell]
    dt = "float64" if has_float64(backend) else "float32"
    layer = make(3, 4, return_sequences=sequences).to(backend, dtype=dt)
    module = getattr(torch.nn, name)(3, 4, batch_first=True).double()
    with torch.no_grad():
        for key in KEYS:
            weight = portnn.to_numpy(layer.params[key]).astype(np.float64)
            getattr(module, f"{key}_l0").copy_(torch.tensor(weight))
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    y = layer.forward(backend.asarray(x, dtype=dt))
    tx = torch.tensor(x, requires_grad=True)
    out = module(tx)[0]
    ty = out if sequences else out[:, -1]
    dy = np.random.default_rng(1).standard_normal(tuple(ty.shape))
    dx = layer.backward(backend.asarray(dy, dtype=dt))
    ty.backward(torch.tensor(dy))
    tol = 1e-10 if dt == "float64" else 1e-5
    assert_close(y, ty.detach().numpy(), rtol=tol, atol=tol)
    assert_close(dx, tx.grad.numpy(), rtol=tol, atol=tol)
    for key in KEYS:
        assert_close(layer.grads[key], getattr(module, f"{key}_l0").grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_one_input_projection_for_the_whole_sequence(torch, cell):
    """Counted on torch: forward and backward over T steps take T + 1 matrix products forward (the
    input projection once, ``h @ weight_hh.T`` per step), not 2 T."""
    from portnn.backends._torch_count import count_ops

    with portnn.use_backend("torch", "cpu") as be:
        layer = CELLS[cell][0](3, 4, return_sequences=True)
        counts = {}
        for t in (4, 9):
            x = be.asarray(np.ones((2, t, 3), np.float32))
            with count_ops() as forward:
                y = layer.forward(x)
            with count_ops() as backward:
                layer.backward(y)
            counts[t] = (forward.names["mm"] + forward.names["addmm"],
                         backward.names["mm"] + backward.names["addmm"])
    assert counts[9][0] - counts[4][0] == 5  # one product per extra step
    assert counts[9][0] == 9 + 1
    assert counts[9][1] - counts[4][1] == 2 * 5  # per step: dW_hh and dh; dW_ih and dx once


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_sequence_classifier_learns(backend, cell):
    """Embedding + recurrent layer + Dense: is token 1 in the sequence before token 2?"""
    rng = np.random.default_rng(0)
    x = rng.integers(3, 6, (96, 6))
    first, second = rng.integers(0, 6, 96), rng.integers(0, 6, 96)
    keep = first != second
    x, first, second = x[keep], first[keep], second[keep]
    x[np.arange(len(x)), first], x[np.arange(len(x)), second] = 1, 2
    y = (first < second).astype(np.int64)
    portnn.seed(0)
    model = portnn.Sequential([portnn.Embedding(6, 8), CELLS[cell][0](8, 16), portnn.Dense(16, 2)],
                              loss="crossentropy", optimizer=portnn.Adam(0.02))
    history = model.fit(x, y, epochs=40, batch_size=32, verbose=0)
    assert history["accuracy"][-1] > 0.9, history["accuracy"][-5:]


def test_bad_input_names_the_layer():
    with pytest.raises(ValueError, match=r"LSTM\(3, 4\) expects sequences of shape \(batch, time, 3\), "
                                         r"got \(2, 3\)"):
        portnn.LSTM(3, 4).forward(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"GRU\(3, 0\).*hidden_size"):
        portnn.GRU(3, 0)

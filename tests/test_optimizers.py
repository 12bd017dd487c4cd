"""Optimizers and learning-rate schedules against torch.optim, step for step, on every backend."""

import math

import numpy as np
import pytest

import portnn
from conftest import assert_close, has_float64
from portnn import optimizers
from portnn.backends import backend_of

rng = np.random.default_rng(0)
W0 = {"weight": rng.standard_normal((3, 2)), "bias": rng.standard_normal(2)}
# A fixed gradient sequence, the same for portnn and torch.
GRADS = [{k: rng.standard_normal(v.shape) for k, v in W0.items()} for _ in range(6)]
STEPS_PER_EPOCH = 2

CASES = {
    "sgd": (lambda lr: portnn.SGD(lr), lambda o, p, lr: o.SGD(p, lr=lr)),
    "sgd_momentum": (lambda lr: portnn.SGD(lr, momentum=0.9),
                     lambda o, p, lr: o.SGD(p, lr=lr, momentum=0.9)),
    "sgd_nesterov_l2": (lambda lr: portnn.SGD(lr, momentum=0.8, nesterov=True, weight_decay=0.1),
                        lambda o, p, lr: o.SGD(p, lr=lr, momentum=0.8, nesterov=True,
                                               weight_decay=0.1)),
    "adam": (lambda lr: portnn.Adam(lr, betas=(0.8, 0.95)),
             lambda o, p, lr: o.Adam(p, lr=lr, betas=(0.8, 0.95))),
    "adam_l2": (lambda lr: portnn.Adam(lr, weight_decay=0.1),
                lambda o, p, lr: o.Adam(p, lr=lr, weight_decay=0.1)),
    "adamw": (lambda lr: portnn.AdamW(lr, weight_decay=0.1),
              lambda o, p, lr: o.AdamW(p, lr=lr, weight_decay=0.1)),
    "rmsprop": (lambda lr: portnn.RMSProp(lr, alpha=0.9),
                lambda o, p, lr: o.RMSprop(p, lr=lr, alpha=0.9)),
    "rmsprop_l2": (lambda lr: portnn.RMSProp(lr, weight_decay=0.1),
                   lambda o, p, lr: o.RMSprop(p, lr=lr, weight_decay=0.1)),
}
SCHEDULES = {
    "constant": (lambda: 0.05, None),
    "step": (lambda: portnn.StepDecay(0.05, step_size=2, gamma=0.5),
             lambda s, opt: s.StepLR(opt, step_size=2, gamma=0.5)),
    "exponential": (lambda: portnn.ExponentialDecay(0.05, gamma=0.7),
                    lambda s, opt: s.ExponentialLR(opt, gamma=0.7)),
}


def _layer(be):
    dtype = "float64" if has_float64(be) else "float32"
    layer = portnn.Dense(3, 2, dtype=dtype)
    for key, value in W0.items():
        layer.params[key] = be.asarray(value.copy(), dtype=dtype)  # numpy: asarray does not copy
    return layer


def _run_portnn(be, optimizer, layer):
    """Six steps, two per epoch; returns host copies of the parameters after each step."""
    dtype = "float64" if has_float64(be) else "float32"
    seen = []
    for i, grads in enumerate(GRADS):
        optimizer.epoch = i // STEPS_PER_EPOCH
        layer.grads = {k: be.asarray(g, dtype=dtype) for k, g in grads.items()}
        optimizer.step([portnn.ReLU(), layer])
        seen.append({k: portnn.to_numpy(v).copy() for k, v in layer.params.items()})
    return seen


def _run_torch(torch, make, make_schedule):
    params = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in W0.items()}
    optimizer = make(torch.optim, list(params.values()), 0.05)
    schedule = make_schedule and make_schedule(torch.optim.lr_scheduler, optimizer)
    seen = []
    for i, grads in enumerate(GRADS):
        for key, p in params.items():
            p.grad = torch.tensor(grads[key])
        optimizer.step()
        if schedule is not None and (i + 1) % STEPS_PER_EPOCH == 0:
            schedule.step()
        seen.append({k: p.detach().numpy().copy() for k, p in params.items()})
    return seen


def _tol(be):
    return 1e-10 if has_float64(be) else 2e-5


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch_optim(backend, torch, name, schedule):
    make, make_torch = CASES[name]
    make_lr, make_torch_schedule = SCHEDULES[schedule]
    layer = _layer(backend)
    got = _run_portnn(backend, make(make_lr()), layer)
    want = _run_torch(torch, make_torch, make_torch_schedule)
    for step, (g, w) in enumerate(zip(got, want, strict=True)):
        for key in W0:
            np.testing.assert_allclose(g[key], w[key], rtol=_tol(backend), atol=_tol(backend),
                                       err_msg=f"{name}/{schedule}: {key} after step {step + 1}")


@pytest.mark.parametrize("name", list(CASES))
def test_updates_in_place_and_state_on_device(backend, name):
    layer = _layer(backend)
    before = dict(layer.params)
    optimizer = CASES[name][0](0.05)
    _run_portnn(backend, optimizer, layer)
    for key, value in layer.params.items():
        # Identity only where arrays are mutable; on JAX the dict holds the new array.
        assert (value is before[key]) == backend.mutable, f"{name}: {key} identity on {backend}"
        assert not np.allclose(portnn.to_numpy(value), W0[key])
    states = [a for s in optimizer.state.values() for a in s.values()]
    assert states or name == "sgd"
    for array in states:
        assert backend_of(array) == backend
    assert optimizer.t == len(GRADS)


def test_state_on_meta_device(torch):  # the torch fixture: skips without torch
    with portnn.use_backend("torch", "meta") as be:
        layer = portnn.Dense(3, 2)
        layer.grads = {k: be.xp.ones_like(v) for k, v in layer.params.items()}
        optimizer = portnn.Adam(0.1)
        optimizer.step([layer])
    assert {str(backend_of(a)) for s in optimizer.state.values() for a in s.values()} == {
        "torch-meta"}


def test_cosine_decay_formula():
    schedule = portnn.CosineDecay(0.1, epochs=10, min_lr=0.01)
    for epoch in range(13):
        e = min(epoch, 10)
        want = 0.01 + 0.5 * (0.1 - 0.01) * (1 + math.cos(math.pi * e / 10))
        assert schedule(epoch) == pytest.approx(want, rel=1e-12)
    assert schedule(0) == pytest.approx(0.1) and schedule(10) == pytest.approx(0.01)


def test_cosine_decay_matches_torch(torch):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=8, eta_min=0.01)
    schedule = portnn.CosineDecay(0.1, epochs=8, min_lr=0.01)
    for epoch in range(9):
        assert schedule(epoch) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
        opt.step()
        ref.step()


def test_fit_steps_the_schedule_per_epoch(backend):
    """fit sets ``optimizer.epoch`` before each epoch: the schedule sees 0, 1, 2, ..."""
    seen = []

    class Recording(portnn.StepDecay):
        def __call__(self, epoch):
            seen.append(epoch)
            return super().__call__(epoch)

    x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    model = portnn.Sequential([portnn.Dense(3, 1)], loss="mse",
                              optimizer=portnn.SGD(Recording(0.1, step_size=2, gamma=0.5)))
    model.fit(x, x[:, :1], epochs=3, batch_size=4, verbose=0)
    # Read per batch (two per epoch); once per epoch where the epoch is one compiled program.
    assert seen == ([0, 1, 2] if backend.library.compiles else [0, 0, 1, 1, 2, 2])
    assert model.optimizer.t == 6


def test_fit_applies_scheduled_lr(backend):
    """With plain SGD on full batches, each epoch's update is ``lr(epoch) * grad``."""
    x = np.random.default_rng(1).standard_normal((6, 3))
    y = x @ np.array([[1.0], [-2.0], [0.5]])
    schedule = portnn.ExponentialDecay(0.1, gamma=0.5)
    model = portnn.Sequential([portnn.Dense(3, 1, bias=False)], loss="mse",
                              optimizer=portnn.SGD(schedule))
    w = portnn.to_numpy(model.layers[0].params["weight"]).astype(np.float64)
    model.fit(x, y, epochs=3, shuffle=False, verbose=0)
    for epoch in range(3):
        grad = 2 * x.T @ (x @ w - y) / len(x)
        w = w - schedule(epoch) * grad
    assert_close(model.layers[0].params["weight"], w, rtol=1e-4, atol=1e-5)


def test_schedules_reject_bad_arguments():
    with pytest.raises(ValueError, match="step_size"):
        portnn.StepDecay(0.1, step_size=0)
    with pytest.raises(ValueError, match="epochs"):
        portnn.CosineDecay(0.1, epochs=0)


def test_unknown_names_give_clear_errors():
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamm'.*'adam'"):
        optimizers.get("adamm")
    with pytest.raises(TypeError, match="optimizer"):
        optimizers.get(3)
    with pytest.raises(ValueError, match="unknown optimizer"):
        portnn.Sequential([portnn.Dense(2, 1)], loss="mse", optimizer="sgdd")
    assert isinstance(optimizers.get("Adam"), portnn.Adam)
    assert type(optimizers.get("adamw")) is portnn.AdamW
    assert isinstance(optimizers.get("rmsprop"), portnn.RMSProp)
    with pytest.raises(ValueError, match="nesterov"):
        portnn.SGD(0.1, nesterov=True)


def test_missing_gradient_names_the_layer():
    layer = portnn.Dense(2, 1)
    with pytest.raises(ValueError, match=r"Dense.*backward"):
        portnn.SGD(0.1).step([layer])


@pytest.mark.parametrize("make", [
    lambda: portnn.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=1e-4),
    lambda: portnn.Adam(portnn.StepDecay(0.1, 3, 0.5), betas=(0.8, 0.9), eps=1e-7),
    lambda: portnn.AdamW(portnn.CosineDecay(0.1, 10, 0.001)),
    lambda: portnn.RMSProp(portnn.ExponentialDecay(0.01, 0.9), alpha=0.95),
], ids=["sgd", "adam", "adamw", "rmsprop"])
def test_config_rebuilds_the_same_optimizer(make):
    optimizer = make()
    config = optimizer.config()
    lr = config.pop("lr")
    if isinstance(lr, dict):
        lr = dict(lr)
        lr = getattr(optimizers, lr.pop("schedule"))(**lr)
    clone = type(optimizer)(lr=lr, **config)
    assert clone.config() == optimizer.config()
    for epoch in range(5):
        clone.epoch = optimizer.epoch = epoch
        assert clone.current_lr == optimizer.current_lr


def test_schedule_continues_across_fit_calls():
    """A second fit picks the schedule up where the first left it (as a torch lr_scheduler)."""
    seen = []

    class Recording(portnn.ExponentialDecay):
        def __call__(self, epoch):
            seen.append(epoch)
            return super().__call__(epoch)

    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    model = portnn.Sequential([portnn.Dense(3, 1)], loss="mse",
                              optimizer=portnn.SGD(Recording(0.1, gamma=0.5)))
    model.fit(x, x[:, :1], epochs=2, verbose=0)
    assert model.optimizer.epoch == 2
    model.fit(x, x[:, :1], epochs=2, verbose=0)
    assert seen == [0, 1, 2, 3] and model.optimizer.epoch == 4

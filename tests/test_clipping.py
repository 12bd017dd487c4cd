"""Gradient clipping: clipnorm / global_clipnorm / clipvalue step for step against PyTorch."""

import numpy as np
import pytest

import portnn
from conftest import assert_close, has_float64

OPTIMIZERS = {
    "sgd": (lambda **c: portnn.SGD(0.1, momentum=0.9, weight_decay=0.01, **c),
            lambda t, p: t.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01)),
    "adam": (lambda **c: portnn.Adam(0.05, **c), lambda t, p: t.optim.Adam(p, lr=0.05)),
    "rmsprop": (lambda **c: portnn.RMSProp(0.01, **c), lambda t, p: t.optim.RMSprop(p, lr=0.01)),
}


def _torch_clip(torch, params, kind, value):
    if kind == "clipnorm":
        for p in params:
            torch.nn.utils.clip_grad_norm_([p], value)
    elif kind == "global_clipnorm":
        torch.nn.utils.clip_grad_norm_(params, value)
    else:
        torch.nn.utils.clip_grad_value_(params, value)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("kind, value", [("clipnorm", 0.05), ("global_clipnorm", 0.08),
                                         ("clipvalue", 0.02)])
def test_clipped_steps_match_torch(backend, torch, name, kind, value):
    dt = "float64" if has_float64(backend) else "float32"
    make, make_ref = OPTIMIZERS[name]
    model = portnn.Sequential([portnn.Dense(3, 4), portnn.Tanh(), portnn.Dense(4, 2)],
                              loss=portnn.MSE(), optimizer=make(**{kind: value})).to(dtype=dt)
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((6, 3)) * 3, rng.standard_normal((6, 2)) * 3
    dense = [model.layers[0], model.layers[2]]
    refs = [torch.nn.Linear(3, 4, dtype=torch.float64), torch.nn.Linear(4, 2, dtype=torch.float64)]
    with torch.no_grad():
        for layer, ref in zip(dense, refs, strict=True):
            ref.weight.copy_(torch.tensor(portnn.to_numpy(layer.params["weight"]).T))
            ref.bias.copy_(torch.tensor(portnn.to_numpy(layer.params["bias"])))
    params = [p for ref in refs for p in ref.parameters()]
    ref_opt = make_ref(torch, params)
    clipped = []
    for _ in range(3):
        ref_opt.zero_grad()
        out = refs[1](torch.tanh(refs[0](torch.tensor(x))))
        torch.nn.functional.mse_loss(out, torch.tensor(t)).backward()
        before = [p.grad.clone() for p in params]
        _torch_clip(torch, params, kind, value)
        clipped.append(any(not torch.equal(b, p.grad) for b, p in zip(before, params, strict=True)))
        ref_opt.step()
    assert all(clipped), "the reference never clipped: the test would not test clipping"

    model.fit(x, t, epochs=3, batch_size=None, shuffle=False, verbose=0)
    tol = 1e-9 if dt == "float64" else 2e-5
    for layer, ref in zip(dense, refs, strict=True):
        assert_close(layer.params["weight"], ref.weight.detach().numpy().T, rtol=tol, atol=tol)
        assert_close(layer.params["bias"], ref.bias.detach().numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["clipnorm", "global_clipnorm", "clipvalue"])
def test_clipping_reads_nothing_back(any_device, kind):
    # torch's meta device raises on any host read-back: the clip is computed on the device.
    model = portnn.Sequential([portnn.Dense(4, 3), portnn.ReLU(), portnn.Dense(3, 2)],
                              loss=portnn.MSE(), optimizer=portnn.SGD(0.1, **{kind: 0.5}))
    model.train_step(any_device.asarray(np.ones((5, 4), np.float32)),
                     any_device.asarray(np.zeros((5, 2), np.float32)))
    assert portnn.backends.backend_of(model.layers[0].params["weight"]) == any_device


def test_clipping_is_saved_in_checkpoints(tmp_path):
    model = portnn.Sequential([portnn.Dense(2, 1)], loss="mse",
                              optimizer=portnn.Adam(0.01, global_clipnorm=1.5))
    model.save(tmp_path / "m.npz")
    opt = portnn.Sequential.load(tmp_path / "m.npz").optimizer
    assert (opt.global_clipnorm, opt.clipnorm, opt.clipvalue) == (1.5, None, None)


def test_clipping_argument_errors():
    with pytest.raises(ValueError, match="SGD: clipnorm must be a positive number"):
        portnn.SGD(0.1, clipnorm=-1.0)
    with pytest.raises(ValueError, match="at most one of clipnorm, global_clipnorm and clipvalue"):
        portnn.Adam(clipnorm=1.0, clipvalue=0.5)
    with pytest.raises(TypeError):
        portnn.SGD(0.1, clip_norm=1.0)

"""No host syncs and no host-to-device copies inside a training step on CuPy's code paths.

Without a GPU, a stand-in (``tests/_cupy_standin.py``) whose arrays record every
read back to the host takes CuPy's fast paths in ``portnn/backends/_fast.py``;
on a CUDA machine the same steps run on real CuPy under
``cupyx.allow_synchronize(False)``.
"""

from __future__ import annotations

import numpy as np
import pytest
from _cupy_standin import STANDIN, DeviceArray, cupy, to_device

import portnn
from portnn.backends import _fast


@pytest.fixture
def standin(monkeypatch):
    """Every fast path takes its CuPy route, into the stand-in ``cupy``, as for CuPy arrays.

    The arrays stay NumPy's (the stand-in's calls return ``DeviceArray``): portnn's portable
    code is counted on torch (tests/test_sync_free.py); here it is the CuPy-only calls.
    """
    monkeypatch.setattr(_fast, "_numpy_or_cupy", lambda x: None if _fast._portable.get() else cupy)
    monkeypatch.setattr(_fast, "_numpy", lambda x: False)
    monkeypatch.setattr(_fast, "launch_bound", lambda x: True)  # Conv2D's (C, N, H, W) order, as on CuPy
    return STANDIN


@pytest.mark.parametrize("first", [1, 2])
@pytest.mark.parametrize("kernel, stride", [((3, 3), (1, 1)), ((2, 3), (2, 1)), ((3, 2), (3, 2))])
def test_cupy_windows_are_a_view_without_syncs(standin, first, kernel, stride):
    shape = (2, 3, 9, 8) if first == 2 else (2, 9, 8, 3)
    x = to_device(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    with standin.step() as events:
        view = _fast.sliding_windows(x, kernel, stride, first)
    assert events == []
    assert isinstance(view, DeviceArray) and np.shares_memory(view, x)
    with _fast.portable():
        assert _fast.sliding_windows(x, kernel, stride, first) is None  # the caller stacks slices
    (kh, kw), (sh, sw) = kernel, stride
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + sh * (view.shape[first] - 1) + 1, sh)
            cols = slice(j, j + sw * (view.shape[first + 1] - 1) + 1, sw)
            expected = x[(slice(None),) * first + (rows, cols)]
            np.testing.assert_array_equal(view[..., i, j], expected)


def test_the_standin_sees_cupys_own_sliding_window_view_sync(standin):
    """The control: CuPy's ``sliding_window_view`` copies its window shape and reads it back."""
    x = to_device(np.zeros((2, 3, 5, 5), np.float32))
    with standin.step() as events:
        cupy.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))
        x[:1, 0, 0, 0].item()
    assert events == ["h2d", "sync:__bool__", "sync:item"]


def _cnn():
    return portnn.Sequential([portnn.Conv2D(1, 4, 3, padding=1), portnn.ReLU(), portnn.MaxPool2D(2),
                              portnn.Conv2D(4, 8, 3), portnn.ReLU(), portnn.Flatten(),
                              portnn.Dense(8 * 2 * 2, 3)],
                             loss="crossentropy", optimizer=portnn.SGD(0.01, momentum=0.9))


def test_cnn_training_steps_on_the_cupy_standin_never_sync(standin):
    rng = np.random.default_rng(0)
    x = to_device(rng.standard_normal((8, 1, 8, 8)).astype(np.float32))
    y = to_device(rng.integers(0, 3, 8))
    model = _cnn()
    model.train_step(x[:4], y[:4])  # optimizer state and cached constants
    with standin.step() as events:
        for start in (0, 4, 0):
            loss, correct = model.train_step(x[start:start + 4], y[start:start + 4])
    assert events == []
    assert np.isfinite(loss) and 0 <= correct <= 4
    portnn.seed(0)
    reference = _cnn()  # the same weights and data on plain NumPy
    portnn.seed(0)
    model = _cnn()
    for start in (0, 0, 4, 0):
        expected = reference.train_step(np.asarray(x[start:start + 4]), np.asarray(y[start:start + 4]))[0]
        got = model.train_step(x[start:start + 4], y[start:start + 4])[0]
        np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_cnn_training_steps_on_real_cuda_never_sync():
    """On a CUDA machine: CuPy raises on any synchronising call inside the steps."""
    try:
        be = portnn.get_backend("cupy", "cuda:0")
    except portnn.BackendError as exc:
        pytest.skip(f"cupy-cuda:0 unavailable: {exc}")
    import cupyx

    with portnn.use_backend("cupy", "cuda:0"):
        model = _cnn()
    rng = np.random.default_rng(0)
    x, y = be.asarray(rng.standard_normal((8, 1, 8, 8))), be.asarray(rng.integers(0, 3, 8))
    with be.activate():
        be.to_numpy(model.train_step(x[:4], y[:4])[0])  # warm-up, finished before the guard
        with cupyx.allow_synchronize(False):
            for start in (0, 4):
                loss, correct = model.train_step(x[start:start + 4], y[start:start + 4])
    assert np.isfinite(float(loss)) and 0 <= int(correct) <= 4

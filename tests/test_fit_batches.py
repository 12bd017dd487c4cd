"""fit's batches: a shuffled batch of one (taken as a slice, not a gather) trains as the gathered one."""

import numpy as np

import portnn
from conftest import assert_close, has_float64


def test_shuffled_batches_of_one_replay_the_permutation(backend):
    """fit(batch_size=1) equals train_step on x[order[i]] in the order portnn's generator drew."""
    rng = np.random.default_rng(3)
    x, y, w = rng.standard_normal((5, 3)), rng.standard_normal((5, 2)), rng.uniform(0.5, 2.0, 5)
    dt = "float64" if has_float64(backend) else "float32"

    def net():
        portnn.seed(0)
        return portnn.Sequential([portnn.Dense(3, 4, dtype=dt), portnn.Tanh(), portnn.Dense(4, 2, dtype=dt)],
                                 loss="mse", optimizer=portnn.SGD(0.1, momentum=0.5),
                                 backend=backend.name, device=backend.device_name)

    fitted = net()
    portnn.seed(1)
    fitted.fit(x, y, epochs=2, batch_size=1, sample_weight=w, verbose=0)
    replayed = net()
    portnn.seed(1)
    xd, yd, wd = (backend.asarray(a, dtype=dt) for a in (x, y, w))
    for _ in range(2):
        for i in portnn.backends.init_rng().permutation(5).tolist():
            rows = backend.asarray(np.array([i]))
            replayed.train_step(*(backend.xp.take(a, rows, axis=0) for a in (xd, yd, wd)))
    for a, b in zip(fitted.layers, replayed.layers, strict=True):
        for key in a.params:
            assert_close(a.params[key], backend.to_numpy(b.params[key]), rtol=1e-6, atol=1e-6)

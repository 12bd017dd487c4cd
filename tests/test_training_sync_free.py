"""The training features add no host sync and no host-to-device copy per step (counted on torch)."""

import numpy as np
import pytest

import portnn

torch = pytest.importorskip("torch")
from portnn.backends._torch_count import per_step  # noqa: E402

BATCH = 4


@pytest.mark.parametrize("feature", ["clipnorm", "global_clipnorm", "clipvalue", "sample_weight",
                                     "class_weight", "metrics", "callbacks"])
def test_no_syncs_or_host_copies_per_step(feature, tmp_path):
    clip = {feature: 0.5} if "clip" in feature else {}
    with portnn.use_backend("torch", "cpu"):
        model = portnn.Sequential([portnn.Dense(4, 5), portnn.ReLU(), portnn.Dense(5, 6)],
                                  loss=portnn.CrossEntropy(), optimizer=portnn.Adam(0.01, **clip),
                                  metrics=["accuracy", "top5_accuracy"] if feature == "metrics" else None)
    cbs = [portnn.callbacks.EarlyStopping(monitor="loss", patience=5, restore_best_weights=True),
           portnn.callbacks.ReduceLROnPlateau(monitor="loss", patience=1),
           portnn.callbacks.ModelCheckpoint(tmp_path / "m.npz", monitor="loss")]

    def run(steps):
        rng = np.random.default_rng(steps)
        n = steps * BATCH
        x, y = rng.standard_normal((n, 4)).astype(np.float32), rng.integers(0, 6, n)
        extra = {"sample_weight": {"sample_weight": rng.uniform(0.5, 2, n)},
                 "class_weight": {"class_weight": {c: 1.0 + c for c in range(6)}},
                 "callbacks": {"callbacks": cbs}}.get(feature, {})
        model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0, **extra)

    counts = per_step(run)
    assert counts.syncs == 0 and counts.h2d == 0, dict(counts.sync_names)
    assert counts.ops > 0

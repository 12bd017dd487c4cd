"""Trained, killed and started again by tests/test_backup.py: ``python backup_train.py BACKEND DIR OUT``.

``PORTNN_TEST_PAUSE=saved:K`` (after this process's K-th backup is in place), ``save:K`` (its K-th
backup written to the temporary file, before the rename) or ``batch:K`` (its K-th training batch):
print ``ready`` and sleep, for the test to SIGKILL it there.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

import portnn

try:
    import torch

    torch.set_num_threads(1)
except ImportError:
    pass

PAUSE, _, AT = os.environ.get("PORTNN_TEST_PAUSE", "").partition(":")
counts = {"saved": 0, "save": 0, "batch": 0}


def pause(kind: str) -> None:
    counts[kind] += 1
    if kind == PAUSE and counts[kind] == int(AT):
        print("ready", flush=True)
        time.sleep(120)


_replace = os.replace


def replace(src: str, dst: str) -> None:  # the atomic save's rename: pause before or after it
    backup = os.fspath(dst).endswith("portnn-backup.npz")
    if backup:
        pause("save")
    _replace(src, dst)
    if backup:
        pause("saved")



class Probe(portnn.Layer):
    """The identity; counts training batches (to pause in the middle of an epoch)."""

    def forward(self, x, training=False):
        if training:
            pause("batch")
        return x

    def backward(self, dy):
        return dy


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 0.5)


def model(backend: str, seed: int) -> portnn.Sequential:
    portnn.seed(seed)
    return portnn.Sequential(
        [portnn.Dense(4, 16), portnn.ReLU(), Probe(), portnn.Dropout(0.25), portnn.Dense(16, 3)],
        loss="crossentropy", optimizer=portnn.Adam(portnn.optimizers.StepDecay(0.02, 2, 0.5)),
        backend=backend)


def train(m: portnn.Sequential, callbacks: list) -> portnn.History:
    x, y = data()
    stop = portnn.callbacks.EarlyStopping("loss", patience=20)
    return m.fit(x, y, epochs=6, batch_size=8, verbose=0, callbacks=[stop, *callbacks])


def weights(m: portnn.Sequential) -> dict[str, np.ndarray]:
    return {path: portnn.to_numpy(layer.params[key]) for path, layer, key in m.named_parameters()}


if __name__ == "__main__":
    os.replace = replace  # only in the script's own process, never in a test importing this module
    backend, folder, out = sys.argv[1:4]
    # A restarted run draws other initial weights and seeds: the backup must put back all of it.
    resumed = os.path.exists(os.path.join(folder, "portnn-backup.npz"))
    m = model(backend, seed=int(time.time_ns() % 1000) + 1 if resumed else 0)
    history = train(m, [portnn.callbacks.BackupAndRestore(folder)])
    np.savez(out, loss=np.array(history["loss"]), **weights(m))

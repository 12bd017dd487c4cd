"""BackupAndRestore and fit(initial_epoch=): a resumed training equals one never stopped, bit for bit.

In process on every backend (an interrupted fit, then fresh objects seeded otherwise), and with
real SIGKILLs in subprocesses (tests/backup_train.py) between epochs, mid-epoch and during the save.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import portnn
from portnn.callbacks import BackupAndRestore, Callback, EarlyStopping
from portnn.training.checkpoints import CheckpointError

sys.path.insert(0, str(Path(__file__).parent))
import backup_train  # noqa: E402

SCRIPT = Path(__file__).parent / "backup_train.py"


class Interrupt(Exception):
    pass


class InterruptAt(Callback):
    """Raise at the end of epoch ``at`` (before that epoch's backup: the last one is of ``at - 1``)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_epoch_end(self, epoch, logs):
        if epoch == self.at:
            raise Interrupt


def _backup_state(folder) -> dict:
    with np.load(os.path.join(folder, "portnn-backup.npz")) as f:
        return json.loads(str(f["__backup__"]))


def _same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert np.array_equal(a[key], b[key]), key


def test_resumed_fit_is_bit_identical(backend, tmp_path):
    reference = backup_train.model(backend, seed=0)
    expected = backup_train.train(reference, [])
    first = backup_train.model(backend, seed=0)
    with pytest.raises(Interrupt):
        backup_train.train(first, [BackupAndRestore(tmp_path), InterruptAt(3)])
    assert _backup_state(tmp_path)["epoch"] == 2  # three epochs done and backed up
    portnn.seed(123)  # "a new process": other seeds, other initial weights, fresh objects
    resumed = backup_train.model(backend, seed=99)
    history = backup_train.train(resumed, [BackupAndRestore(tmp_path)])
    _same(backup_train.weights(resumed), backup_train.weights(reference))
    assert history["loss"] == expected["loss"]
    assert resumed.optimizer.t == reference.optimizer.t and resumed.optimizer.epoch == 6
    assert not os.listdir(tmp_path)  # deleted at the end


def _until_ready(backend, folder, out, pause=None):
    """Run the script; with ``pause``, SIGKILL it once it reports being there."""
    env = {**os.environ, "PORTNN_TEST_PAUSE": pause or ""}
    proc = subprocess.Popen([sys.executable, str(SCRIPT), backend, str(folder), str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if pause is None:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        return
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise AssertionError(f"the script ended before {pause}: {proc.communicate()[1]}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("backend", [("numpy", "cpu"), ("torch", "cpu"), ("array_api_strict", "CPU_DEVICE")],
                         ids=lambda b: f"{b[0]}-{b[1]}")
def test_sigkill_at_three_moments(backend, tmp_path):
    name, device = backend
    if portnn.backends.unavailable_reason(name):
        pytest.skip(portnn.backends.unavailable_reason(name))
    folder, out = tmp_path / "backup", tmp_path / "out.npz"
    # Killed between epochs: after the second backup is in place (epochs 0 and 1 done).
    _until_ready(name, folder, out, "saved:2")
    assert _backup_state(folder)["epoch"] == 1
    # Restarted (from epoch 2), killed in the middle of an epoch: its third batch.
    _until_ready(name, folder, out, "batch:3")
    assert _backup_state(folder)["epoch"] == 1
    # Restarted, killed during its second save (epoch 3's): the file written, not renamed yet.
    _until_ready(name, folder, out, "save:2")
    leftovers = [f for f in os.listdir(folder) if f.endswith(".tmp")]
    assert len(leftovers) == 1
    assert _backup_state(folder)["epoch"] == 2  # the previous backup, intact
    # Restarted to the end.
    _until_ready(name, folder, out)
    assert not os.path.exists(folder / "portnn-backup.npz") and not os.listdir(folder)
    with portnn.use_backend(name, device):
        reference = backup_train.model(name, seed=0)
        expected = backup_train.train(reference, [])
    with np.load(out) as f:
        got = {k: f[k] for k in f.files}
    assert got.pop("loss").tolist() == expected["loss"]
    _same(got, backup_train.weights(reference))


def _small(seed=0, hidden=8, **kwargs):
    portnn.seed(seed)
    return portnn.Sequential([portnn.Dense(4, hidden), portnn.ReLU(), portnn.Dense(hidden, 3)],
                             loss="crossentropy", optimizer="adam", backend="numpy", **kwargs)


def _backed_up(tmp_path, epochs=4, at=2, **fit):
    x, y = backup_train.data()
    with pytest.raises(Interrupt):
        _small().fit(x, y, epochs=epochs, batch_size=8, verbose=0,
                     callbacks=[BackupAndRestore(tmp_path), InterruptAt(at)], **fit)
    return x, y


def test_backup_of_another_model_is_a_clear_error(tmp_path):
    x, y = _backed_up(tmp_path)
    other = _small(hidden=5)
    with pytest.raises(CheckpointError, match="another model.*0.weight"):
        other.fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=[BackupAndRestore(tmp_path)])
    assert other.optimizer.t == 0 and not other.optimizer.state  # nothing restored, nothing trained
    deeper = portnn.Sequential([portnn.Dense(4, 8), portnn.ReLU(), portnn.Dense(8, 3), portnn.Softmax()],
                               loss="crossentropy", optimizer="adam")
    with pytest.raises(CheckpointError, match="another model: layers"):
        deeper.fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=[BackupAndRestore(tmp_path)])


@pytest.mark.parametrize("change, named", [({"batch_size": 4}, "batch_size=8 there, 4 here"),
                                           ({"epochs": 5}, "epochs=4 there, 5 here"),
                                           ({"shuffle": False}, "shuffle=True there, False here"),
                                           ({"n": 30}, "samples=40 there, 30 here")])
def test_backup_from_other_fit_arguments_is_a_clear_error(tmp_path, change, named):
    x, y = _backed_up(tmp_path)
    n = change.pop("n", 40)
    args = {"epochs": 4, "batch_size": 8, **change}
    with pytest.raises(CheckpointError, match=named):
        _small().fit(x[:n], y[:n], verbose=0, callbacks=[BackupAndRestore(tmp_path)], **args)
    assert os.path.exists(tmp_path / "portnn-backup.npz")  # kept for the right fit


def test_other_stateful_callbacks_are_a_clear_error(tmp_path):
    x, y = _backed_up(tmp_path)
    with pytest.raises(CheckpointError, match="EarlyStopping"):
        _small().fit(x, y, epochs=4, batch_size=8, verbose=0,
                     callbacks=[BackupAndRestore(tmp_path), EarlyStopping("loss")])


def test_save_freq_and_delete_checkpoint(tmp_path):
    x, y = _backed_up(tmp_path, epochs=6, at=4, **{})  # saves every epoch: the last of epoch 3
    assert _backup_state(tmp_path)["epoch"] == 3
    x, y = backup_train.data()
    every = tmp_path / "every2"
    with pytest.raises(Interrupt):
        _small().fit(x, y, epochs=6, batch_size=8, verbose=0,
                     callbacks=[BackupAndRestore(every, save_freq=2), InterruptAt(4)])
    assert _backup_state(every)["epoch"] == 3  # epochs 1 and 3 saved, not 4
    kept = tmp_path / "kept"
    _small().fit(x, y, epochs=2, verbose=0, callbacks=[BackupAndRestore(kept, delete_checkpoint=False)])
    assert _backup_state(kept)["epoch"] == 1
    with pytest.raises(ValueError, match="save_freq"):
        BackupAndRestore(tmp_path, save_freq="batch")


def test_a_run_stopped_by_a_callback_resumes_stopped(tmp_path):
    x, y = backup_train.data()

    class StopAt(Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 1:
                self.model.stop_training = True

    reference = _small()
    expected = reference.fit(x, y, epochs=5, batch_size=8, verbose=0, callbacks=[StopAt()])
    # Killed after the stopping epoch's backup, before the end of training deletes it:
    keep = BackupAndRestore(tmp_path, delete_checkpoint=False)
    _small().fit(x, y, epochs=5, batch_size=8, verbose=0, callbacks=[keep, StopAt()])
    resumed = _small(seed=4)
    history = resumed.fit(x, y, epochs=5, batch_size=8, verbose=0, callbacks=[BackupAndRestore(tmp_path)])
    assert history["loss"] == expected["loss"] and len(history["loss"]) == 2
    _same(backup_train.weights(resumed), backup_train.weights(reference))


def test_initial_epoch():
    x, y = backup_train.data()
    seen = []
    model = _small()
    model.optimizer = portnn.SGD(portnn.optimizers.StepDecay(0.1, 1, 0.5))
    history = model.fit(x, y, epochs=5, initial_epoch=3, verbose=0,
                        callbacks=[lambda m, epoch, logs: seen.append((epoch, m.optimizer.epoch))])
    assert len(history["loss"]) == 2 and [e for e, _ in seen] == [3, 4]
    assert model.optimizer.epoch == 2  # the schedule continues from the optimizer's own position
    assert len(model.fit(x, y, epochs=3, initial_epoch=3, verbose=0)) == 0  # nothing left to train
    with pytest.raises(ValueError, match="initial_epoch=4 is past epochs=3"):
        model.fit(x, y, epochs=3, initial_epoch=4, verbose=0)
    with pytest.raises(ValueError, match="initial_epoch"):
        model.fit(x, y, epochs=3, initial_epoch=-1, verbose=0)

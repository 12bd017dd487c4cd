"""Callbacks on every backend: EarlyStopping, ModelCheckpoint, ReduceLROnPlateau, CSVLogger, Lambda."""

import csv

import numpy as np
import pytest

import portnn
from portnn.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LambdaCallback,
    ModelCheckpoint,
    ReduceLROnPlateau,
)


def _data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return (rng.standard_normal((n, 4)) + 2 * np.eye(3, 4)[y]).astype(np.float32), y


def _model(lr=0.1):
    return portnn.Sequential([portnn.Dense(4, 6), portnn.BatchNorm(6), portnn.ReLU(), portnn.Dense(6, 3)],
                             loss=portnn.CrossEntropy(), optimizer=portnn.SGD(lr, momentum=0.9))


def _weights(model):
    return [{k: portnn.to_numpy(v).copy() for k, v in {**layer.params, **layer.buffers}.items()}
            for layer in model.layers]


class Record(Callback):
    """Host copies of every parameter and buffer after each epoch."""

    def __init__(self):
        self.per_epoch = []

    def on_epoch_end(self, epoch, logs):
        self.per_epoch.append(_weights(self.model))


class Script(Callback):
    """Overwrite the monitored value with a scripted sequence (to drive the callbacks after it)."""

    def __init__(self, key, values):
        self.key, self.values = key, values

    def on_epoch_end(self, epoch, logs):
        logs[self.key] = self.values[epoch]


def _assert_same(a, b):
    for la, lb in zip(a, b, strict=True):
        assert la.keys() == lb.keys()
        for k in la:
            np.testing.assert_array_equal(la[k], lb[k])


def test_early_stopping_restores_best_weights_bit_identically(backend):
    x, y = _data()
    xv, yv = _data(9, seed=1)
    model, record = _model(), Record()
    # Validation loss scripted to be best at epoch 1 (0-based), then worse twice: stop after epoch 3.
    stop = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    history = model.fit(x, y, epochs=20, batch_size=4, validation_data=(xv, yv), verbose=0,
                        callbacks=[record, Script("val_loss", [1.0, 0.5, 0.7, 0.6, 0.1]), stop])
    assert history.epochs == 4 and stop.stopped_epoch == 3 and stop.best_epoch == 1
    _assert_same(_weights(model), record.per_epoch[1])
    with pytest.raises(AssertionError):
        _assert_same(record.per_epoch[3], record.per_epoch[1])  # training did move the weights


def test_early_stopping_patience_min_delta_and_mode(backend):
    x, y = _data()
    stop = EarlyStopping(monitor="loss", mode="max", patience=0)  # the loss falls: no improvement
    assert _model().fit(x, y, epochs=10, verbose=0, callbacks=[stop]).epochs == 2
    stop = EarlyStopping(monitor="loss", min_delta=10.0, patience=3)  # never improves by 10
    assert _model().fit(x, y, epochs=10, verbose=0, callbacks=[stop]).epochs == 4
    stop = EarlyStopping(monitor="accuracy", patience=1)  # auto: accuracy is maximised
    assert stop._sign == 1.0 and EarlyStopping()._sign == -1.0


def test_model_checkpoint_save_best_only_writes_only_on_improvement(backend, tmp_path):
    x, y = _data()
    record = Record()
    ckpt = ModelCheckpoint(tmp_path / "m-{epoch}.npz", monitor="loss", save_best_only=True)
    _model().fit(x, y, epochs=5, batch_size=4, verbose=0,
                 callbacks=[record, Script("loss", [3.0, 1.0, 2.0, 0.5, 0.5]), ckpt])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-1.npz", "m-2.npz", "m-4.npz"]
    loaded = portnn.Sequential.load(tmp_path / "m-2.npz", backend=backend)
    _assert_same(_weights(loaded), record.per_epoch[1])


def test_model_checkpoint_every_epoch_formats_logs(backend, tmp_path):
    x, y = _data()
    ckpt = ModelCheckpoint(tmp_path / "m-{epoch:02d}-{accuracy:.2f}.npz", monitor="loss")
    history = _model().fit(x, y, epochs=3, verbose=0, callbacks=[ckpt])
    names = [f"m-{e + 1:02d}-{a:.2f}.npz" for e, a in enumerate(history["accuracy"])]
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    assert ckpt.saved == [str(tmp_path / name) for name in names]


def test_reduce_lr_on_plateau_and_the_rate_continues_across_checkpoints(backend, tmp_path):
    x, y = _data()
    model = _model(lr=0.2)
    rates = []
    plateau = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2)
    flat = Script("loss", [1.0] * 6)
    log_lr = LambdaCallback(on_epoch_end=lambda epoch, logs: rates.append(model.optimizer.current_lr))
    model.fit(x, y, epochs=5, verbose=0, callbacks=[flat, plateau, log_lr,
                                                    ModelCheckpoint(tmp_path / "m.npz", monitor="loss")])
    # epoch 0 sets the best; epochs 1-2 do not improve: halve; epochs 3-4 again: halve.
    assert rates == pytest.approx([0.2, 0.2, 0.1, 0.1, 0.05])
    loaded = portnn.Sequential.load(tmp_path / "m.npz", backend=backend)
    assert loaded.optimizer.lr == pytest.approx(0.05) and loaded.optimizer.epoch == 5
    rates.clear()
    model = loaded
    loaded.fit(x, y, epochs=3, verbose=0,
               callbacks=[flat, ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, min_lr=0.03),
                          log_lr])
    assert rates == pytest.approx([0.05, 0.05, 0.03]) and loaded.optimizer.epoch == 8


def test_reduce_lr_on_plateau_refuses_a_schedule():
    x, y = _data()
    model = portnn.Sequential([portnn.Dense(4, 3)], loss="crossentropy",
                              optimizer=portnn.SGD(portnn.StepDecay(0.1, 2)))
    with pytest.raises(ValueError, match="ReduceLROnPlateau: the optimizer's lr is a schedule"):
        model.fit(x, y, verbose=0, callbacks=[ReduceLROnPlateau(monitor="loss")])


def test_unknown_monitor_is_an_error_before_training(backend):
    x, y = _data()
    model = _model()
    before = _weights(model)
    with pytest.raises(ValueError, match=r"EarlyStopping: monitor='val_loss' is not logged by this fit; "
                                         r"it logs \['loss', 'accuracy'\] \(pass validation_data="):
        model.fit(x, y, epochs=3, verbose=0, callbacks=[EarlyStopping()])
    with pytest.raises(ValueError, match=r"ModelCheckpoint: monitor='val_mae'.*'val_accuracy'"):
        model.fit(x, y, verbose=0, validation_data=(x, y),
                  callbacks=[ModelCheckpoint("unused.npz", monitor="val_mae")])
    _assert_same(_weights(model), before)


def test_csv_logger_and_lambda_callback(backend, tmp_path):
    x, y = _data()
    calls = []
    cb = LambdaCallback(on_train_begin=lambda logs: calls.append("begin"),
                        on_epoch_end=lambda epoch, logs: calls.append(epoch),
                        on_train_end=lambda logs: calls.append(("end", sorted(logs))))
    history = _model().fit(x, y, epochs=3, verbose=0, validation_data=(x, y),
                           callbacks=[CSVLogger(tmp_path / "log.csv"), cb])
    assert calls == ["begin", 0, 1, 2, ("end", sorted(history))]
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    for key, values in history.items():
        assert [float(r[key]) for r in rows] == pytest.approx(values)


def test_bad_callback_type():
    x, y = _data()
    with pytest.raises(TypeError, match="callbacks must be Callback objects or functions"):
        _model().fit(x, y, verbose=0, callbacks=["early"])

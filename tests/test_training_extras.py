"""Metrics, the progress display, summary(), plots and the meta-device error."""

import io
import re

import numpy as np
import pytest

import portnn
from portnn.training.progress import Progress


class Frozen(portnn.SGD):
    """An optimizer that leaves the weights as they are: every batch sees the same model."""

    def step(self, layers):
        pass

def _data(n=20, classes=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5)).astype(np.float32), np.arange(n) % classes


def _classifier(metrics=None, classes=7):
    return portnn.Sequential([portnn.Dense(5, 8), portnn.ReLU(), portnn.Dense(8, classes)],
                             loss=portnn.CrossEntropy(), optimizer=portnn.SGD(0.1), metrics=metrics)


# --------------------------------------------------------------------------- metrics


def test_metrics_match_torch(backend, torch):
    x, y = _data()
    model = _classifier(["accuracy", "top5_accuracy"])
    result = model.evaluate(x, y, batch_size=6)
    out = torch.tensor(portnn.to_numpy(model.predict(x)))
    target = torch.tensor(y)
    top5 = (out.topk(5, dim=1).indices == target[:, None]).any(dim=1).double().mean().item()
    assert result["accuracy"] == pytest.approx((out.argmax(1) == target).double().mean().item())
    assert result["top5_accuracy"] == pytest.approx(top5)
    assert 0 < top5 < 1 and set(result) == {"loss", "accuracy", "top5_accuracy"}
    onehot = model.evaluate(x, np.eye(7, dtype=np.float32)[y])
    assert onehot["top5_accuracy"] == pytest.approx(top5)


def test_mae_metric_and_history_names(backend):
    rng = np.random.default_rng(1)
    x, t = rng.standard_normal((10, 3)).astype(np.float32), rng.standard_normal((10, 2)).astype(np.float32)
    model = portnn.Sequential([portnn.Dense(3, 2)], loss="mse", optimizer=Frozen(),
                              metrics=["mae"])
    history = model.fit(x, t, epochs=2, batch_size=3, validation_data=(x, t), verbose=0)
    assert list(history) == ["loss", "mae", "val_loss", "val_mae"]
    expected = np.abs(portnn.to_numpy(model.predict(x)) - t).mean()
    assert history["mae"][-1] == pytest.approx(expected, rel=1e-5)
    assert history["val_mae"][-1] == pytest.approx(expected, rel=1e-5)


def test_metrics_are_saved_in_checkpoints(tmp_path):
    _classifier(["top5_accuracy", "accuracy"]).save(tmp_path / "m.npz")
    loaded = portnn.Sequential.load(tmp_path / "m.npz")
    assert loaded.metrics == ["top5_accuracy", "accuracy"]
    assert list(loaded.evaluate(*_data())) == ["loss", "top5_accuracy", "accuracy"]


def test_metrics_read_back_once_per_epoch(backend, monkeypatch):
    reads = []
    monkeypatch.setattr(portnn.training.loop, "float", lambda v: reads.append(1) or float(v), raising=False)
    x, y = _data()
    _classifier(["accuracy", "top5_accuracy"]).fit(x, y, epochs=3, batch_size=2, verbose=0)
    assert len(reads) == 3 * 3  # loss and two metrics, once per epoch: not per batch


def test_epoch_line_names_metrics(capsys):
    x, y = _data()
    _classifier(["accuracy", "top5_accuracy"]).fit(x, y, epochs=1, validation_data=(x, y))
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(r"epoch 1/1 error=\S+ accuracy=\S+ top5_accuracy=\S+ val_error=\S+ "
                        r"val_accuracy=\S+ val_top5_accuracy=\S+", line), line


def test_metric_errors():
    with pytest.raises(ValueError, match=r"unknown metrics \['f1'\]; valid: \['accuracy', 'mae', "):
        _classifier(["f1"])
    with pytest.raises(ValueError, match="metric 'accuracy' needs a classification loss"):
        portnn.Sequential([portnn.Dense(2, 1)], loss="mse", metrics=["accuracy"])
    with pytest.raises(ValueError, match="metric 'mae': y_pred has shape"):
        _classifier(["mae"]).evaluate(*_data())


def test_confusion_matrix(backend):
    rng = np.random.default_rng(2)
    y_true, scores = rng.integers(0, 4, 50), rng.standard_normal((50, 4))
    expected = np.zeros((4, 4), np.int64)
    for t, p in zip(y_true, scores.argmax(1), strict=True):
        expected[t, p] += 1
    got = portnn.metrics.confusion_matrix(backend.asarray(y_true), backend.asarray(scores))
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(portnn.metrics.confusion_matrix(np.eye(4)[y_true], scores.argmax(1)),
                                  expected)
    with pytest.raises(ValueError, match="labels must lie in"):
        portnn.metrics.confusion_matrix([0, 5], [0, 1], num_classes=3)


# --------------------------------------------------------------------------- progress


class FakeBar:
    instances = []

    def __init__(self, total, desc, **kwargs):
        self.total, self.desc, self.updates, self.postfix, self.closed = total, desc, 0, [], False
        FakeBar.instances.append(self)

    def update(self, n):
        self.updates += n

    def set_postfix_str(self, s, refresh=True):
        self.postfix.append(s)

    def close(self):
        self.closed = True


def test_bar_reads_the_loss_back_at_most_every_interval(monkeypatch):
    now = [0.0]

    def clock():
        now[0] += 0.01  # each step takes 10 ms
        return now[0]

    monkeypatch.setattr(portnn.training.progress, "_tqdm", lambda: FakeBar)
    FakeBar.instances.clear()
    progress = Progress(verbose=1, epochs=2, steps=100, interval=0.25, clock=clock, bar=True)
    progress.epoch_begin(0)
    for _ in range(100):
        progress.step(np.float32(1.5), 3.0)
    progress.epoch_end(0, {"loss": 0.5})
    bar = FakeBar.instances[0]
    assert bar.updates == 100 and bar.closed and bar.desc == "epoch 1/2"
    assert progress.reads == len(bar.postfix) == 4  # 1 s of steps, one read per 0.25 s
    assert bar.postfix[0] == "error=0.5000"


def test_bar_only_on_a_terminal_with_verbose_1(monkeypatch, capsys):
    monkeypatch.setattr(portnn.training.progress, "_tqdm", lambda: FakeBar)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert Progress(1, 3, 5)._tqdm is None  # stderr is not a terminal
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert Progress(1, 3, 5)._tqdm is FakeBar
    assert Progress(2, 3, 5)._tqdm is None and Progress(0, 3, 5)._tqdm is None
    monkeypatch.setattr(portnn.training.progress, "_tqdm", lambda: None)  # tqdm not installed
    assert Progress(1, 3, 5)._tqdm is None


def test_fit_with_real_tqdm_on_a_terminal(backend, monkeypatch, capsys):
    pytest.importorskip("tqdm")
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    x, y = _data()
    history = _classifier().fit(x, y, epochs=2, batch_size=4)
    out = capsys.readouterr()
    assert [line.split()[1] for line in out.out.splitlines()] == ["1/2", "2/2"]
    assert "epoch 1/2" in out.err and history.epochs == 2


# --------------------------------------------------------------------------- summary


def test_summary_counts_equal_torch(any_device, torch, capsys):
    model = portnn.Sequential([portnn.Conv2D(1, 4, 3, padding=1), portnn.BatchNorm(4), portnn.ReLU(),
                               portnn.MaxPool2D(2), portnn.Flatten(), portnn.Dense(4 * 7 * 7, 10),
                               portnn.Dropout(0.5), portnn.Dense(10, 3, bias=False)])
    ref = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                              torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 7 * 7, 10), torch.nn.Dropout(0.5),
                              torch.nn.Linear(10, 3, bias=False)).eval()
    table = model.summary(input_shape=(1, 14, 14))
    assert capsys.readouterr().out.strip() == table.strip()
    x = torch.zeros(1, 1, 14, 14)
    rows = [line for line in table.splitlines() if re.match(r"\d+: ", line)]
    assert len(rows) == len(ref)
    for row, module in zip(rows, ref, strict=True):
        x = module(x)
        count = sum(p.numel() for p in module.parameters())
        assert row.split()[-1].replace(",", "") == str(count)
        assert f"(None, {', '.join(map(str, x.shape[1:]))}" in row
    trainable = sum(p.numel() for p in ref.parameters())
    running = ref[1].running_mean.numel() + ref[1].running_var.numel()
    assert f"Trainable params: {trainable:,} ({trainable * 4 / 1024:.2f} KB)" in table
    assert f"Non-trainable params: {running:,} ({running * 4} B)" in table


def test_summary_uses_the_last_seen_shape_or_asks_for_one():
    model = portnn.Sequential([portnn.Dense(3, 2)])
    with pytest.raises(ValueError, match=r"input shape is not known yet; .*input_shape=\(1, 28, 28\)"):
        model.summary()
    model.predict(np.ones((4, 3), np.float32))
    assert "(None, 2)" in model.summary()
    with pytest.raises(ValueError, match=r"layer 0 \(Dense\) cannot take an input of shape"):
        model.summary(input_shape=(5,))


# --------------------------------------------------------------------------- meta device, plots


def test_fit_on_meta_is_a_clear_error(torch):
    with portnn.use_backend("torch", "meta"):
        model = portnn.Sequential([portnn.Dense(2, 1)], loss="mse", optimizer="sgd")
    with pytest.raises(ValueError, match="'meta' device holds shapes, not values.*layer shape checks only"):
        model.fit(np.ones((4, 2), np.float32), np.ones((4, 1), np.float32), verbose=0)
    with pytest.raises(ValueError, match="Sequential.evaluate: torch's 'meta' device"):
        model.evaluate(np.ones((4, 2), np.float32), np.ones((4, 1), np.float32))


def test_history_plot_and_decision_boundary(backend, tmp_path):
    pytest.importorskip("matplotlib")
    x, y = portnn.data.make_moons(60, noise=0.2, seed=0)
    model = portnn.Sequential([portnn.Dense(2, 8), portnn.Tanh(), portnn.Dense(8, 2)],
                              loss="crossentropy", optimizer=portnn.SGD(0.5))
    history = model.fit(x, y, epochs=3, validation_data=(x, y), verbose=0)
    fig = history.plot(tmp_path / "h.png")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    assert [len(line.get_ydata()) for line in fig.axes[0].lines] == [3, 3]
    assert (tmp_path / "h.png").stat().st_size > 1000
    ax = portnn.plot.decision_boundary(model, x, y, tmp_path / "b.png")
    assert ax.collections and (tmp_path / "b.png").stat().st_size > 1000

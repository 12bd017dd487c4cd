"""No host syncs and no host-to-device copies inside a training step, for every layer, loss
and optimizer (counted on torch with a TorchDispatchMode), the op-count targets of
benchmarks/bench_ops.py, and a training step on torch's shapes-only ``meta`` device."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import portnn

torch = pytest.importorskip("torch")
from portnn.backends._torch_count import count_ops, per_step  # noqa: E402

# name: (layers, input shape per sample); each ends in Dense(?, 3) logits or 3 outputs.
NETS = {
    "dense": (lambda: [portnn.Dense(4, 3)], (4,)),
    "dense_nobias": (lambda: [portnn.Dense(4, 5, bias=False), portnn.ReLU(), portnn.Dense(5, 3)], (4,)),
    "relu": (lambda: [portnn.Dense(4, 5), portnn.ReLU(), portnn.Dense(5, 3)], (4,)),
    "leaky_relu": (lambda: [portnn.Dense(4, 5), portnn.LeakyReLU(0.1), portnn.Dense(5, 3)], (4,)),
    "sigmoid": (lambda: [portnn.Dense(4, 5), portnn.Sigmoid(), portnn.Dense(5, 3)], (4,)),
    "tanh": (lambda: [portnn.Dense(4, 5), portnn.Tanh(), portnn.Dense(5, 3)], (4,)),
    "softmax": (lambda: [portnn.Dense(4, 5), portnn.Softmax(), portnn.Dense(5, 3)], (4,)),
    "dropout": (lambda: [portnn.Dense(4, 5), portnn.Dropout(0.3), portnn.Dense(5, 3)], (4,)),
    "batchnorm": (lambda: [portnn.Dense(4, 5), portnn.BatchNorm(5), portnn.Dense(5, 3)], (4,)),
    "conv_maxpool": (lambda: [portnn.Conv2D(1, 2, 3, padding=1), portnn.MaxPool2D(2),
                              portnn.Flatten(), portnn.Dense(2 * 3 * 3, 3)], (1, 7, 6)),
    "conv_stride_overlap_pool": (lambda: [portnn.Conv2D(1, 2, 3, stride=2), portnn.MaxPool2D(2, 1),
                                          portnn.Flatten(), portnn.Dense(2 * 2 * 2, 3)], (1, 7, 7)),
    "batchnorm2d_avgpool": (lambda: [portnn.Conv2D(1, 2, 3), portnn.BatchNorm(2), portnn.AvgPool2D(2),
                                     portnn.Reshape((8,)), portnn.Dense(8, 3)], (1, 6, 6)),
    "avgpool_overlap": (lambda: [portnn.AvgPool2D(2, 1), portnn.Flatten(), portnn.Dense(20, 3)],
                        (1, 5, 6)),
}
LOSSES = {
    "crossentropy_labels": (portnn.CrossEntropy, lambda r, n: r.integers(0, 3, n)),
    "crossentropy_onehot": (portnn.CrossEntropy,
                            lambda r, n: np.eye(3, dtype=np.float32)[r.integers(0, 3, n)]),
    "mse": (portnn.MSE, lambda r, n: r.standard_normal((n, 3)).astype(np.float32)),
    "bce": (portnn.BinaryCrossEntropy, lambda r, n: (r.uniform(size=(n, 3)) > 0.5).astype(np.float32)),
    "bce_logits": (lambda: portnn.BinaryCrossEntropy(from_logits=True),
                   lambda r, n: (r.uniform(size=(n, 3)) > 0.5).astype(np.float32)),
}
OPTIMIZERS = {
    "sgd": lambda: portnn.SGD(0.01),
    "sgd_nesterov_l2": lambda: portnn.SGD(0.01, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam_l2": lambda: portnn.Adam(weight_decay=0.01),
    "adamw": portnn.AdamW,
    "rmsprop": portnn.RMSProp,
}
BATCH = 4
# Each (net, loss, optimizer) is covered once with the others at their first entry.
COMBOS = ([(n, "crossentropy_labels", "sgd") for n in NETS]
          + [("relu", loss, "sgd") for loss in list(LOSSES)[1:]]
          + [("relu", "crossentropy_labels", opt) for opt in list(OPTIMIZERS)[1:]])


def _model(net, loss, optimizer, device):
    layers, shape = NETS[net]
    probs = loss == "bce"  # BinaryCrossEntropy on probabilities needs outputs in (0, 1)
    with portnn.use_backend("torch", device):
        built = layers() + ([portnn.Sigmoid()] if probs else [])
        return portnn.Sequential(built, loss=LOSSES[loss][0](), optimizer=OPTIMIZERS[optimizer]()), shape


def _data(shape, loss, n):
    rng = np.random.default_rng(n)
    return rng.standard_normal((n, *shape)).astype(np.float32), LOSSES[loss][1](rng, n)


@pytest.mark.parametrize("net,loss,optimizer", COMBOS)
def test_no_syncs_or_host_copies_per_step(net, loss, optimizer):
    model, shape = _model(net, loss, optimizer, "cpu")

    def run(steps):
        model.fit(*_data(shape, loss, steps * BATCH), epochs=1, batch_size=BATCH, verbose=0)

    counts = per_step(run)
    assert counts.syncs == 0 and counts.h2d == 0, dict(counts.sync_names)
    assert counts.ops > 0


@pytest.mark.parametrize("net,loss,optimizer", COMBOS)
def test_train_step_runs_on_meta(net, loss, optimizer):
    """Shapes only: any read of device data or host copy fails on ``meta``."""
    model, shape = _model(net, loss, optimizer, "meta")
    be = portnn.get_backend("torch", "meta")
    x, y = _data(shape, loss, BATCH)
    xb, yb = be.asarray(x), be.asarray(y)
    for _ in range(2):  # the second step finds the optimizer state in place
        out_loss, correct = model.train_step(xb, yb)
    assert out_loss.device.type == "meta" and tuple(out_loss.shape) == ()
    assert correct is None or correct.device.type == "meta"
    for layer in model.layers:
        for value in (*layer.params.values(), *layer.grads.values()):
            assert value.device.type == "meta"


def test_counter_sees_syncs_and_host_copies():
    x = torch.randn(4, 3)
    with count_ops() as c:
        float(x.sum())  # read-back
        x[x > 0]  # boolean mask: a nonzero on the GPU
        torch.tensor(1.0)  # host data
        torch.maximum(x, torch.asarray(0.0))  # a scalar turned into a tensor
        x.to("meta")  # host-to-device copy
    assert c.syncs == 2 and c.h2d == 3, c
    assert c.names["sum"] == 1 and c.names["maximum"] == 1


def _bench_ops():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_ops.py"
    spec = importlib.util.spec_from_file_location("bench_ops", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("model", ["MLP 784-256-128-10", "CNN conv16-pool-conv32-pool-dense"])
def test_ops_per_step_targets(model):
    bench = _bench_ops()
    counts = per_step(bench.portnn_runner(model))
    target = bench.MODELS[model][2]
    assert counts.ops <= target, dict(counts.names)
    assert counts.syncs == 0 and counts.h2d == 0, dict(counts.sync_names)
    assert counts.ops == int(counts.ops)  # the same ops every step


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch has no CUDA device here")
@pytest.mark.parametrize("net", ["relu", "conv_maxpool", "batchnorm2d_avgpool", "dropout"])
def test_training_steps_under_cuda_sync_debug_mode(net):
    """On a real GPU: torch raises on any synchronising call inside the steps."""
    model, shape = _model(net, "crossentropy_labels", "adam_l2", "cuda:0")
    be = portnn.get_backend("torch", "cuda:0")
    x, y = _data(shape, "crossentropy_labels", 4 * BATCH)
    x, y = be.asarray(x), be.asarray(y)
    model.train_step(x[:BATCH], y[:BATCH])  # optimizer state and cached constants
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for start in range(0, 4 * BATCH, BATCH):
            loss, correct = model.train_step(x[start:start + BATCH], y[start:start + BATCH])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert np.isfinite(float(loss)) and 0 <= int(correct) <= BATCH

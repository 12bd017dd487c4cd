"""Run by tests/test_distributed.py under mpiexec, torchrun or alone: N ranks train as one process.

Every rank also trains the same model alone (the reference) and checks, in
float64 after >= 50 steps, that the data-parallel weights and logs equal it.
Prints ``OK <case> max|diff|=...`` lines on rank 0; any failure raises, which
ends the whole job with a non-zero status.
"""

from __future__ import annotations

import os
import sys

import numpy as np

import portnn
from portnn import distributed

try:
    import torch

    torch.set_num_threads(1)
except ImportError:
    torch = None
try:
    import jax

    jax.config.update("jax_enable_x64", True)  # the comparisons are float64 (before any JAX array)
except ImportError:
    jax = None

TOL = 1e-10


def data(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.normal(size=(n, 5)), rng.integers(0, 3, size=n)


def build(optimizer: portnn.Optimizer, bn: bool = False, sync: bool = False) -> portnn.Sequential:
    middle = [portnn.BatchNorm(8, dtype="float64", sync=sync)] if bn else []
    # No bias before BatchNorm: its gradient is exactly zero, and Adam would amplify the rounding noise.
    return portnn.Sequential([portnn.Dense(5, 8, bias=not bn, dtype="float64"), *middle, portnn.Tanh(),
                              portnn.Dense(8, 3, dtype="float64")],
                             loss="crossentropy", optimizer=optimizer)


def build_graph(optimizer: portnn.Optimizer) -> portnn.Model:
    """Two inputs (the first 3 and the last 2 features), each its own Dense, added: a graph model."""
    a, b = portnn.Input((3,)), portnn.Input((2,))
    h = portnn.Add()([portnn.Dense(3, 8, dtype="float64")(a), portnn.Dense(2, 8, dtype="float64")(b)])
    return portnn.Model([a, b], portnn.Dense(8, 3, dtype="float64")(portnn.Tanh()(h)),
                        loss="crossentropy", optimizer=optimizer)


def split(x: np.ndarray) -> list[np.ndarray]:
    return [x[:, :3], x[:, 3:]]


def weights(model: portnn.Sequential) -> list[np.ndarray]:
    arrays = [portnn.to_numpy(v) for layer in model.layers for v in (*layer.params.values(),
                                                                     *layer.buffers.values())]
    if model.optimizer is not None:
        arrays += [portnn.to_numpy(v) for _, s in sorted(model.optimizer.state.items())
                   for _, v in sorted(s.items())]
    return arrays


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert len(a) == len(b), (len(a), len(b))
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


def compare(comm, name: str, make, n: int, epochs: int, batch_size: int, checkpoint: str | None = None,
            shuffle: bool = True, inputs: int = 1, **fit_kwargs):
    x, y = data(n)
    val = data(11)
    if inputs == 2:  # a graph model of two inputs: the features as a list of two arrays
        x, val = split(x), (split(val[0]), val[1])
    portnn.seed(0)
    alone = make()
    h_alone = alone.fit(x, y, epochs=epochs, batch_size=batch_size, validation_data=val, verbose=0,
                        shuffle=shuffle, **fit_kwargs)
    portnn.seed(0)
    model = make()
    seen = []  # samples this rank trained on
    forward = model.forward

    def counting(xb, training=False):
        if training:
            seen.append((xb[0] if isinstance(xb, list) else xb).shape[0])
        return forward(xb, training)

    model.forward = counting
    saved = []

    def save(m, epoch, logs):
        if checkpoint:
            m.save(checkpoint)  # every rank calls it; rank 0 writes, then all wait
            saved.append(os.path.exists(checkpoint))

    h = model.fit(x, y, epochs=epochs, batch_size=batch_size, validation_data=val, verbose=0,
                  distributed=comm, callbacks=[save], shuffle=shuffle, **fit_kwargs)
    steps = epochs * -(-n // batch_size)
    assert steps >= 50, steps
    # Each rank trained on its own slice only, and together on every sample once per epoch.
    if not model.backend.library.compiles:  # a compiled step runs forward only while it traces
        total = int(portnn.to_numpy(comm.allreduce(np.array([sum(seen)])))[0])
        assert total == n * epochs and (comm.size == 1 or sum(seen) < n * epochs), (total, sum(seen))
    diff = max_diff(weights(model), weights(alone))
    logs = max(abs(a - b) for k in h_alone for a, b in zip(h[k], h_alone[k], strict=True))
    assert diff < TOL and logs < TOL, f"{name}: weights differ by {diff}, logs by {logs}"
    assert all(saved), saved
    if comm.is_main:
        print(f"OK {name} steps={steps} max|dw|={diff:.1e} max|dlogs|={logs:.1e}", flush=True)
    return model, x, y


def main() -> None:
    comm = distributed.init()
    assert distributed.init() is comm
    checkpoint = sys.argv[1] if len(sys.argv) > 1 else None
    cases = [("numpy", "cpu"), ("array_api_strict", "device1")] + ([("torch", "cpu")] if torch else []) + (
        [("jax", "cpu")] if jax else [])
    for backend, device in cases:
        with portnn.use_backend(backend, device):
            tag = f"{comm.kind}x{comm.size} {backend}-{device}"
            # 43 samples, global batch 7: slices of 4 and 3, a last batch of 1 (one rank idle).
            model, x, y = compare(comm, f"{tag} sgd-momentum",
                                  lambda: build(portnn.SGD(0.05, momentum=0.9)), 43, 8, 7, checkpoint)
            compare(comm, f"{tag} adam", lambda: build(portnn.Adam(0.01)), 43, 8, 7)
            graph, xg, yg = compare(comm, f"{tag} two-input graph adam",
                                    lambda: build_graph(portnn.Adam(0.01)), 43, 8, 7, inputs=2)
            pg, pg_alone = (portnn.to_numpy(graph.predict(xg, distributed=comm)),
                            portnn.to_numpy(graph.predict(xg)))
            assert np.max(np.abs(pg - pg_alone)) < TOL, "graph predict(distributed)"
            ev, ev_alone = graph.evaluate(xg, yg, distributed=comm), graph.evaluate(xg, yg)
            assert max(abs(ev[k] - ev_alone[k]) for k in ev_alone) < TOL, (ev, ev_alone)
            # Weighted means: each rank's share is its slice's weight over the batch's.
            compare(comm, f"{tag} adam class_weight", lambda: build(portnn.Adam(0.01)), 43, 8, 7,
                    class_weight={0: 1.0, 1: 3.0, 2: 0.5})
            compare(comm, f"{tag} nesterov shuffle=False",
                    lambda: build(portnn.SGD(0.05, momentum=0.9, nesterov=True)), 43, 8, 7, shuffle=False)
            # BatchNorm over the global batch (40 samples: the last batch has 5).
            compare(comm, f"{tag} sync-batchnorm adam",
                    lambda: build(portnn.Adam(0.01), bn=True, sync=True), 40, 9, 7)
            pred = portnn.to_numpy(model.predict(x, distributed=comm))
            # Bit for bit except on XLA, whose products of another batch size may round differently.
            alone_pred = portnn.to_numpy(model.predict(x))
            assert (np.array_equal(pred, alone_pred) if backend != "jax"
                    else np.max(np.abs(pred - alone_pred)) < TOL), "predict(distributed)"
            ev, ev_alone = model.evaluate(x, y, distributed=comm), model.evaluate(x, y)
            assert max(abs(ev[k] - ev_alone[k]) for k in ev_alone) < TOL, (ev, ev_alone)
    # Dropout masks differ per rank (each rank its own stream of the seed).
    portnn.seed(0)
    distributed.prepare(build(portnn.SGD(0.1)), comm)
    mask = portnn.Dropout(0.5).forward(np.ones((1, 64), np.float32), training=True)
    masks = portnn.to_numpy(comm.allgather(mask))
    assert comm.size == 1 or not np.array_equal(masks[0], masks[1]), "dropout masks equal across ranks"
    if comm.is_main:
        print(f"OK {comm.kind}x{comm.size} dropout masks differ per rank", flush=True)


if __name__ == "__main__":
    main()

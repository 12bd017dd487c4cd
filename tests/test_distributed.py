"""Data parallelism: N ranks under mpiexec and torchrun train to one process's weights.

The multi-process tests launch ``tests/_dist_equal.py`` (which compares every
rank against a single-process reference in float64 and raises on a mismatch)
and ``tests/_dist_fail.py`` (a rank that dies); the rest run in this process
on every backend.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import portnn
from conftest import has_float64
from portnn import distributed
from portnn.distributed import Communicator

HERE = Path(__file__).parent
ROOT = HERE.parent
TORCH = importlib.util.find_spec("torch") is not None
JAX = importlib.util.find_spec("jax") is not None
# One "OK" line per (backend, case) plus the dropout line, as _dist_equal.py prints them.
EXPECTED_OK = 6 * (2 + TORCH + JAX) + 1


def _mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"  # pip install mpich puts it in the venv
    return str(beside) if beside.exists() else shutil.which("mpiexec")


MPI_SKIP = ("mpi4py is not installed: pip install 'portnn[mpi]' mpich" if importlib.util.find_spec("mpi4py")
            is None else "no mpiexec: pip install mpich" if _mpiexec() is None else None)
mpi = pytest.mark.skipif(MPI_SKIP is not None, reason=MPI_SKIP or "")
torchrun = pytest.mark.skipif(not TORCH, reason="torch is not installed: pip install torch")


def launcher(kind: str) -> list[str]:
    if kind == "mpi":
        return [_mpiexec(), "-n", "2", sys.executable, "-m", "mpi4py"]
    if kind == "torch":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    return [sys.executable]


def run(kind: str, script: str, *args: str,
        timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for key in ("PORTNN_BACKEND", "PORTNN_DEVICE"):
        env.pop(key, None)
    start = time.perf_counter()
    done = subprocess.run([*launcher(kind), str(HERE / script), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    return done, time.perf_counter() - start


def _check_equal_run(kind: str, tmp_path: Path) -> None:
    checkpoint = tmp_path / "during_fit.npz"
    done, _ = run(kind, "_dist_equal.py", str(checkpoint))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ok = [line for line in done.stdout.splitlines() if line.startswith("OK ")]
    size = 1 if kind == "single" else 2
    assert len(ok) == EXPECTED_OK and all(f"x{size} " in line for line in ok), done.stdout
    portnn.Sequential.load(checkpoint)  # written by rank 0 during fit, complete


@mpi
def test_mpiexec_two_ranks_equal_one_process(tmp_path):
    _check_equal_run("mpi", tmp_path)


@torchrun
def test_torchrun_two_ranks_equal_one_process(tmp_path):
    _check_equal_run("torch", tmp_path)


def test_same_script_alone_uses_size_one_communicator(tmp_path):
    _check_equal_run("single", tmp_path)


@pytest.mark.parametrize("kind", [pytest.param("mpi", marks=mpi), pytest.param("torch", marks=torchrun)])
def test_failing_rank_ends_the_job(kind):
    done, seconds = run(kind, "_dist_fail.py", timeout=60)
    output = f"rc={done.returncode} after {seconds:.1f} s\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert done.returncode != 0 and "rank 0 got past" not in done.stdout, output
    assert seconds < 30, output
    # The traceback usually makes it out; an abort may cut the output short, so not asserted.


# --------------------------------------------------------------------------- in this process


class Twin(Communicator):
    """Rank ``rank`` of ``size`` identical processes: a sum is ``size`` times the value."""

    def __init__(self, rank: int = 0, size: int = 2) -> None:
        self.rank, self.size, self.local_rank = rank, size, rank
        self.calls = 0

    def allreduce(self, x):
        self.calls += 1
        return x * self.size


def test_launcher_from_environment():
    assert distributed.launcher({"PMI_RANK": "0", "PMI_SIZE": "2"}) == "mpi"
    assert distributed.launcher({"OMPI_COMM_WORLD_SIZE": "4"}) == "mpi"
    assert distributed.launcher({"TORCHELASTIC_RUN_ID": "x", "RANK": "0"}) == "torch"
    assert distributed.launcher({"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "h"}) == "torch"
    if "mpi4py.MPI" not in sys.modules:
        assert distributed.launcher({}) == "single"


def test_init_alone_is_size_one_and_cached():
    comm = distributed.init("single")
    assert (comm.rank, comm.size, comm.is_main) == (0, 1, True)
    assert distributed.init() is comm
    with pytest.raises(ValueError, match="unknown kind"):
        distributed.launch._comm, saved = None, distributed.launch._comm
        try:
            distributed.init("carrier-pigeon")
        finally:
            distributed.launch._comm = saved


def test_each_rank_its_own_gpu_when_none_is_named():
    rank3 = Twin(rank=3, size=4)
    assert distributed.rank_device(rank3, {"PORTNN_BACKEND": "cupy"}) == "cuda:3"
    assert distributed.rank_device(rank3, {"PORTNN_BACKEND": "torch", "PORTNN_DEVICE": "cuda"}) == "cuda:3"
    assert distributed.rank_device(rank3, {"PORTNN_BACKEND": "cupy", "PORTNN_DEVICE": "cuda:0"}) is None
    assert distributed.rank_device(rank3, {"PORTNN_BACKEND": "numpy"}) is None
    assert distributed.rank_device(Twin(0, 1), {"PORTNN_BACKEND": "cupy"}) is None


@pytest.mark.parametrize("batch", [1, 2, 7, 8, 13])
@pytest.mark.parametrize("size", [1, 2, 3])
def test_shard_splits_every_batch_exactly(batch, size):
    parts = [distributed.shard(10, 10 + batch, Twin(r, size)) for r in range(size)]
    assert parts[0][0] == 10 and parts[-1][1] == 10 + batch
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
    sizes = [hi - lo for lo, hi, _ in parts]
    assert max(sizes) - min(sizes) <= 1
    assert sum(w for *_, w in parts) == pytest.approx(1.0)
    assert all(w == (hi - lo) / batch for lo, hi, w in parts)


def test_reduce_gradients_one_allreduce_per_dtype(backend):
    if not has_float64(backend):
        pytest.skip(f"{backend} has no float64")
    model = portnn.Sequential([portnn.Dense(3, 4, dtype="float64"), portnn.Tanh(), portnn.Dense(4, 2),
                               portnn.Dense(2, 2, dtype="float64")])
    rng = np.random.default_rng(0)
    expected = {}
    for i, layer in enumerate(model.layers):
        for key, w in layer.params.items():
            g = rng.normal(size=tuple(w.shape))
            layer.grads[key] = backend.asarray(g, dtype=layer.dtype)
            expected[i, key] = 0.25 * 2 * g
    comm = Twin()
    distributed.reduce_gradients(model.layers, comm, weight=0.25)
    assert comm.calls == 2  # float64 and float32: one buffer each
    for (i, key), want in expected.items():
        got = model.layers[i].grads[key]
        assert tuple(got.shape) == want.shape and str(got.dtype).endswith(model.layers[i].dtype)
        np.testing.assert_allclose(portnn.to_numpy(got), want, rtol=1e-6)


def test_fit_distributed_alone_is_unchanged(backend):
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 2, size=20)
    runs = []
    for dist in (None, True):
        portnn.seed(0)
        model = portnn.Sequential([portnn.Dense(3, 4), portnn.ReLU(), portnn.Dense(4, 2)],
                                  loss="crossentropy", optimizer=portnn.Adam(0.01))
        history = model.fit(x, y, epochs=3, batch_size=6, verbose=0, distributed=dist)
        runs.append(([portnn.to_numpy(w) for layer in model.layers for w in layer.params.values()], history))
    assert runs[0][1] == runs[1][1]
    for a, b in zip(runs[0][0], runs[1][0], strict=True):
        np.testing.assert_array_equal(a, b)


def test_fit_distributed_rejects_other_values():
    model = portnn.Sequential([portnn.Dense(2, 1)], loss="mse", optimizer="sgd")
    with pytest.raises(TypeError, match="distributed must be True"):
        model.fit(np.zeros((2, 2)), np.zeros((2, 1)), distributed="yes")


def test_sync_batchnorm_alone_equals_batchnorm(backend):
    """The synchronised statistics path with a one-process sum gives plain BatchNorm's numbers."""
    x = backend.asarray(np.random.default_rng(0).normal(size=(6, 3, 2, 2)))
    dy = backend.asarray(np.random.default_rng(1).normal(size=(6, 3, 2, 2)))
    plain, synced = portnn.BatchNorm(3), portnn.BatchNorm(3, sync=True)
    synced.allreduce = lambda a: a
    outs = [(layer.forward(x, training=True), layer.backward(dy)) for layer in (plain, synced)]
    for a, b in zip(outs[0], outs[1], strict=True):
        np.testing.assert_allclose(portnn.to_numpy(a), portnn.to_numpy(b), rtol=1e-5, atol=1e-5)
    for key in plain.buffers:
        np.testing.assert_allclose(portnn.to_numpy(plain.buffers[key]), portnn.to_numpy(synced.buffers[key]),
                                   rtol=1e-6)
    assert synced.config()["sync"] is True


def test_sync_batchnorm_reads_nothing_back():
    """The synchronised statistics keep the global count on the device: no host sync, no host copy."""
    pytest.importorskip("torch")
    from portnn.backends._torch_count import count_ops

    be = portnn.get_backend("torch", "cpu")
    x = be.asarray(np.random.default_rng(0).normal(size=(6, 3, 2, 2)))
    dy = be.asarray(np.random.default_rng(1).normal(size=(6, 3, 2, 2)))
    with portnn.use_backend("torch", "cpu"):
        layer = portnn.BatchNorm(3, sync=True)
    layer.allreduce = lambda a: a
    with count_ops() as c:
        layer.forward(x, training=True)
        layer.backward(dy)
    assert (c.syncs, c.h2d) == (0, 0)
    assert c.ops > 0  # the counter saw the layer's work


def test_predict_dask_loads_once_and_matches_predict(tmp_path, monkeypatch):
    da = pytest.importorskip("dask.array")
    dask_distributed = pytest.importorskip("dask.distributed", reason="pip install 'dask[distributed]'")
    portnn.seed(0)
    model = portnn.Sequential([portnn.Flatten(), portnn.Dense(16, 3)])
    path = tmp_path / "model.npz"
    model.save(path)
    x = np.random.default_rng(0).normal(size=(50, 1, 4, 4)).astype(np.float32)
    loads = []
    load = portnn.Sequential.load
    monkeypatch.setattr(portnn.Sequential, "load",
                        classmethod(lambda cls, *a, **k: (loads.append(a[0]), load(*a, **k))[1]))
    monkeypatch.setattr(portnn.distributed.dask, "_models", {})
    with dask_distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                       dashboard_address=None) as cluster, dask_distributed.Client(cluster):
        lazy = distributed.predict_dask(path, da.from_array(x, chunks=(13, 1, 4, 4)), batch_size=5)
        assert lazy.shape == (50, 3) and lazy.chunks[0] == (13, 13, 13, 11)
        got = lazy.compute()
    np.testing.assert_allclose(got, portnn.to_numpy(model.predict(x)), rtol=1e-6)
    assert len(loads) == 1  # one worker: the checkpoint is read once, for all four chunks
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        distributed.predict_dask(tmp_path / "missing.npz", da.from_array(x))


@mpi
def test_example_runs_under_mpiexec(tmp_path):
    from test_examples import SHARED_MNIST, synthetic_mnist

    real = all((SHARED_MNIST / f"{name}.gz").is_file() for name in portnn.data.MNIST_FILES)
    folder = SHARED_MNIST if real else synthetic_mnist(tmp_path / "mnist")
    done, _ = run("mpi", "../examples/mnist_distributed.py", "--data", str(folder), "--epochs", "1",
                  "--limit", "640", "--test-limit", "500", "--batch-size", "32", "--out", str(tmp_path),
                  "--min-accuracy", "0.5" if real else "0.9")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("epoch 1/1 error=") == 1  # rank 0 prints, rank 1 does not
    assert "mpi communicator, 2 rank(s)" in done.stdout
    portnn.Sequential.load(tmp_path / "mnist_distributed.npz")


class Recorder(Communicator):
    """Rank 0 of 2: collectives return their input and are recorded for a :class:`Replayer`."""

    def __init__(self) -> None:
        self.rank, self.size, self.local_rank, self.sent = 0, 2, 0, []

    def broadcast_object(self, obj, root=0):
        self.sent.append(obj)
        return obj

    def broadcast(self, x, root=0):
        self.sent.append(portnn.to_numpy(x).copy())
        return x


class Replayer(Communicator):
    """Rank 1 of 2: receives what a :class:`Recorder` sent, in order."""

    def __init__(self, sent: list) -> None:
        self.rank, self.size, self.local_rank, self.sent = 1, 2, 1, list(sent)

    def broadcast_object(self, obj, root=0):
        return self.sent.pop(0)

    def broadcast(self, x, root=0):
        host = self.sent.pop(0)
        return portnn.backends.backend_of(x).asarray(host, dtype=str(host.dtype))


def _cnn(seed: int, optimizer: portnn.Optimizer) -> portnn.Sequential:
    portnn.seed(seed)
    return portnn.Sequential([portnn.Conv2D(1, 2, 3), portnn.BatchNorm(2), portnn.Flatten(),
                              portnn.Dense(8, 2)], loss="crossentropy", optimizer=optimizer)


def test_prepare_makes_every_rank_rank_zeros_model(backend):
    root, other = _cnn(0, portnn.Adam(0.01)), _cnn(1, portnn.Adam(0.01))
    x = np.random.default_rng(0).normal(size=(4, 1, 4, 4)).astype(np.float32)
    root.fit(x, np.array([0, 1, 0, 1]), epochs=2, batch_size=2, verbose=0)  # Adam state, t=4, moved buffers
    weight = other.layers[0].params["weight"]
    recorder = Recorder()
    try:
        distributed.prepare(root, recorder)
        distributed.prepare(other, Replayer(recorder.sent))
    finally:
        portnn.backends.set_stream(0)
    assert (other.layers[0].params["weight"] is weight) == backend.mutable  # in place where it can be
    assert (other.optimizer.t, other.optimizer.epoch) == (root.optimizer.t, root.optimizer.epoch) == (4, 2)
    assert sorted(other.optimizer.state) == sorted(root.optimizer.state)
    entries = distributed.data_parallel._entries
    for a, b in zip(entries(root), entries(other), strict=True):
        assert a[0] == b[0]
        np.testing.assert_array_equal(portnn.to_numpy(a[1][a[2]]), portnn.to_numpy(b[1][b[2]]))


def test_prepare_rejects_a_different_model():
    recorder = Recorder()
    distributed.prepare(_cnn(0, portnn.SGD(0.1)), recorder)
    portnn.seed(0)
    other = portnn.Sequential([portnn.Dense(3, 2)], loss="mse", optimizer=portnn.SGD(0.1))
    try:
        with pytest.raises(ValueError, match="rank 1's model differs from rank 0's"):
            distributed.prepare(other, Replayer(recorder.sent))
    finally:
        portnn.backends.set_stream(0)


def test_dropout_stream_per_rank(backend):
    masks = {}
    try:
        for stream in (0, 1, 0):
            portnn.seed(0)
            portnn.backends.set_stream(stream)
            out = portnn.Dropout(0.5).forward(backend.asarray(np.ones((1, 64))), training=True)
            masks.setdefault(stream, []).append(portnn.to_numpy(out))
    finally:
        portnn.backends.set_stream(0)
    np.testing.assert_array_equal(masks[0][0], masks[0][1])  # stream 0 is the single-process one
    assert not np.array_equal(masks[0][0], masks[1][0])


def test_data_parallel_checks_the_plan():
    model = portnn.Sequential([portnn.Dense(2, 2), portnn.BatchNorm(2, sync=True)], loss="mse",
                              optimizer="sgd")

    class Uneven(Twin):
        def allgather(self, x):
            return np.concatenate([x, x + 1])

        def broadcast_object(self, obj, root=0):
            return obj

    with pytest.raises(ValueError, match=r"the ranks hold \[10, 11\] samples"):
        distributed.DataParallel(model, Uneven()).begin(10)
    try:
        plan = distributed.DataParallel(model, Twin(rank=0, size=3))
        plan.begin(10)
        with pytest.raises(ValueError, match="sync=True.*has 2 for 3 ranks"):
            plan.shard(8, 10)
        plan.close()
    finally:
        portnn.backends.set_stream(0)
    assert model.layers[1].allreduce is None and model.strategy is distributed.LOCAL


def test_shard_with_sample_weights():
    w = np.array([1.0, 3.0, 0.0, 2.0, 2.0])
    parts = [distributed.shard(5, 10, Twin(r, 2), w) for r in range(2)]
    assert [(lo, hi) for lo, hi, _ in parts] == [(5, 8), (8, 10)]
    assert [share for *_, share in parts] == [0.5, 0.5]  # 4 of 8 and 4 of 8


def test_reduce_logs_one_allreduce_and_none_only_where_absent_everywhere(backend):
    comm = Twin()
    sums = {"loss": backend.asarray(np.array(1.5)), "hits": 3.0, "none": None}
    assert distributed.reduce_logs(sums, comm) == {"loss": 3.0, "hits": 6.0, "none": None}
    assert comm.calls == 1


# --------------------------------------------------------------------------- GPUs per rank


@pytest.fixture
def fake_torch_cuda(torch, monkeypatch):
    """torch on a one-GPU machine, with a process group that records how it was made."""
    import torch.distributed as dist

    made = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)

    def set_device(index):
        if int(getattr(index, "index", index)) >= 1:
            raise RuntimeError("CUDA error: invalid device ordinal")
        made["set_device"] = index

    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "is_nccl_available", lambda: True)
    monkeypatch.setattr(dist, "init_process_group", lambda backend=None, **kw: made.update(backend=backend))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    return made


def test_torch_communicator_of_a_cpu_model_never_touches_cuda(fake_torch_cuda, torch):
    """Rank 1 of two CPU ranks on a one-GPU machine: gloo, and no cuda.set_device(1)."""
    from portnn.backends import _communicators

    comm = _communicators.TorchCommunicator()
    assert fake_torch_cuda == {"backend": "gloo"}
    assert (comm.rank, comm.size, comm.local_rank) == (1, 2, 1)
    assert comm._group(torch.zeros(2)) is None  # CPU tensors: the default (gloo) group


def test_two_ranks_on_one_gpu_is_a_clear_error():
    from portnn.backends._communicators import gpu_clash

    assert gpu_clash([("a", 0), ("a", 1), ("b", 0)]) is None
    assert gpu_clash([("a", 0), ("b", 0), ("a", 0)]) == "ranks 0 and 2 both compute on cuda:0 of a"


def test_mpi_on_cupy_without_nccl_says_what_to_install(monkeypatch):
    """CuPy without libnccl: ``cupy.cuda.nccl.available`` is False and its functions are missing."""
    import types

    from portnn.backends import _communicators

    nccl = types.ModuleType("cupy.cuda.nccl")
    nccl.available = False
    cuda = types.ModuleType("cupy.cuda")
    cuda.nccl = nccl
    cupy = types.ModuleType("cupy")
    cupy.cuda = cuda
    for name, module in (("cupy", cupy), ("cupy.cuda", cuda), ("cupy.cuda.nccl", nccl)):
        monkeypatch.setitem(sys.modules, name, module)
    with pytest.raises(portnn.BackendError, match=r"needs NCCL, which this CuPy cannot load: "
                                                  r"pip install nvidia-nccl-cu12"):
        _communicators._CupyNccl(Communicator(), first=None)

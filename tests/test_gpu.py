"""The GPU paths without a GPU: device placement, device names, CuPy's self-check, `info` advice.

A stand-in library that, like CuPy, creates arrays on its *current* device and
records which device was current when the model computed; a fake ``cupy``
module whose steps fail as a broken CUDA install does; a fake ``libcuda``.
"""

from __future__ import annotations

import contextlib
import sys
import types
import warnings

import numpy as np
import pytest

import portnn
from portnn.backends import LIBRARIES, BackendError, _cupy_check, _gpus
from portnn.backends._libraries import ArrayAPIStrict, CuPy, Torch

# --------------------------------------------------------------------------- device placement


class CurrentDeviceLibrary(ArrayAPIStrict):
    """array-api-strict with CuPy's current-device model: new arrays land on the current device.

    ``device=`` is ignored on creation, as array-api-compat's CuPy ``zeros``/``arange`` do, so
    anything created outside ``activate`` lands on ``CPU_DEVICE`` and a later mix with the
    model's ``device1`` arrays fails.
    """

    def __init__(self) -> None:
        self.stack: list = []
        self.reads: list[str] = []  # the current device at each copy to the host

    def to_numpy(self, array):
        self.reads.append(self.current())
        return super().to_numpy(array)

    def current(self) -> str:
        return self.device_name(self.stack[-1]) if self.stack else "CPU_DEVICE"

    @contextlib.contextmanager
    def activate(self, device):
        self.stack.append(device)
        try:
            yield
        finally:
            self.stack.pop()

    def from_numpy(self, array, device, copy=True):
        import array_api_strict

        here = array_api_strict.Device(self.current())
        return array_api_strict.asarray(array, device=here, copy=copy or None)


class Probe(portnn.Layer):
    """Identity that records the current device whenever it computes."""

    def __init__(self, library: CurrentDeviceLibrary, weighted: bool = False) -> None:
        super().__init__()
        self.library, self.seen = library, []
        if weighted:
            self.add_param("weight", np.ones(1, np.float32))

    def forward(self, x, training=False):
        self.seen.append(self.library.current())
        return x

    def backward(self, dy):
        self.seen.append(self.library.current())
        if self.params:
            self.grads["weight"] = self.params["weight"] * 0.0
        return dy


@pytest.fixture
def current_device(monkeypatch):
    """The stand-in library installed as ``array_api_strict``."""
    library = CurrentDeviceLibrary()
    monkeypatch.setitem(LIBRARIES, "array_api_strict", library)
    portnn.backends.clear_cache()
    yield library
    portnn.backends.clear_cache()
    assert library.stack == []  # every context was left


def _model(library, with_probe=True):
    with portnn.use_backend("array_api_strict", "device1"):
        probe = Probe(library)
        model = portnn.Sequential([portnn.Dense(3, 4), *[probe][:with_probe], portnn.Dense(4, 2)],
                                  loss="crossentropy", optimizer=portnn.Adam(0.01))
    return model, probe


def test_model_on_a_second_device_computes_there(current_device, tmp_path):
    model, probe = _model(current_device)
    assert model.backend.device_name == "device1"
    x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    y = np.arange(8) % 2
    model.fit(x, y, epochs=2, batch_size=4, validation_data=(x, y), verbose=0)
    model.predict(x, batch_size=3)
    model.evaluate(x, y)
    # + 3: the data boundary (portnn/training/inputs.py) runs one sample through the model to learn its
    # output shape for the targets' checks, once each for fit's data, validation_data and evaluate.
    assert set(probe.seen) == {"device1"} and len(probe.seen) == 2 * 2 * 2 + 2 + 3 + 1 + 3
    model, _ = _model(current_device, with_probe=False)  # a test-only layer has no place in a checkpoint
    model.fit(x, y, epochs=1, verbose=0)
    current_device.reads.clear()
    model.save(tmp_path / "m.npz")
    assert set(current_device.reads) == {"device1"} and len(current_device.reads) == 4 + 2 * 4
    loaded = portnn.Sequential.load(tmp_path / "m.npz", backend="array_api_strict", device="device1")
    assert loaded.backend.device_name == "device1"
    assert loaded.optimizer.state["0.weight"]["m"].device == model.layers[0].params["weight"].device
    np.testing.assert_array_equal(portnn.to_numpy(loaded.predict(x)), portnn.to_numpy(model.predict(x)))


def test_without_the_hook_the_stand_in_computes_elsewhere(current_device):
    """The control: outside the hook the stand-in's current device is not the model's."""
    model, probe = _model(current_device)
    x = model.backend.asarray(np.ones((2, 3), np.float32))
    model.forward(x)
    assert probe.seen == ["CPU_DEVICE"]
    with pytest.raises(Exception, match="device"):  # an array created off the hook lands elsewhere
        x + current_device.from_numpy(np.ones((2, 3), np.float32), None)


def test_layer_call_and_gradcheck_enter_the_device(current_device):
    be = portnn.get_backend("array_api_strict", "device1")
    x = be.asarray(np.ones((2, 3), np.float32))
    free = Probe(current_device)
    free(x)  # parameter-free: the input's device
    with portnn.use_backend("array_api_strict", "device1"):
        weighted = Probe(current_device, weighted=True)
    assert current_device.stack == []
    weighted(x)
    portnn.gradcheck(weighted, x)
    assert free.seen == ["device1"]
    assert set(weighted.seen) == {"device1"} and len(weighted.seen) > 3


class ProbeLoss(portnn.MSE):
    """MSE that records the current device whenever it computes."""

    def __init__(self, library: CurrentDeviceLibrary) -> None:
        self.library, self.seen = library, []

    def forward(self, y_pred, y_true):
        self.seen.append(self.library.current())
        return super().forward(y_pred, y_true)

    def gradient(self):
        self.seen.append(self.library.current())
        return super().gradient()

    def config(self):
        return {}


def test_train_step_and_a_loss_called_alone_enter_the_device(current_device):
    model, probe = _model(current_device)
    be = model.backend
    x, y = be.asarray(np.ones((4, 3), np.float32)), be.asarray(np.arange(4) % 2)
    model.train_step(x, y)  # outside any device context
    assert probe.seen == ["device1", "device1"]
    loss = ProbeLoss(current_device)
    out = model.forward(x)
    loss(out, be.asarray(np.zeros((4, 2), np.float32)))
    loss.backward()
    assert loss.seen == ["device1", "device1"] and current_device.stack == []


def test_iota_is_made_on_its_arrays_device(current_device, monkeypatch):
    """array-api-compat's CuPy ``arange`` ignores ``device=``: the array lands on the current device."""
    import array_api_strict as xps

    class CurrentArange:
        int64 = xps.int64

        def arange(self, n, dtype=None, device=None):
            return xps.arange(n, dtype=dtype, device=xps.Device(current_device.current()))

    from portnn.backends import _fast

    monkeypatch.setattr(_fast, "_IOTA", {})
    monkeypatch.setattr(_fast, "array_namespace", lambda x: CurrentArange())
    like = portnn.get_backend("array_api_strict", "device1").asarray(np.zeros(3, np.int64))
    assert _fast.iota(5, like=like).device == like.device  # called outside any device context
    assert _fast.iota(5, like=like) is _fast.iota(5, like=like)


def test_use_backend_makes_the_device_current(current_device):
    with portnn.use_backend("array_api_strict", "device1"):
        assert current_device.current() == "device1"
    assert current_device.current() == "CPU_DEVICE"


# --------------------------------------------------------------------------- a fake cupy


class FakeDevice:
    """``cupy.cuda.Device``: a context manager that makes its id current (and records it)."""

    current = 0
    log: list = []

    def __init__(self, device_id=0):
        self.id = device_id
        self._previous = []

    # CuPy's Device compares by id and, being a Cython class with rich comparison only, has no hash.
    def __eq__(self, other):
        return isinstance(other, FakeDevice) and other.id == self.id

    __hash__ = None

    def __enter__(self):
        self._previous.append(FakeDevice.current)
        FakeDevice.current = self.id
        return self

    def __exit__(self, *exc):
        FakeDevice.current = self._previous.pop()

    def synchronize(self):
        FakeDevice.log.append(("synchronize", FakeDevice.current))


class FakeArray:
    def __init__(self, value):
        self.value = np.asarray(value)

    def reshape(self, *shape):
        return FakeArray(self.value.reshape(*shape))

    def __mul__(self, other):
        return self._op("elementwise", self.value * other)

    def __add__(self, other):
        return self._op("elementwise", self.value + getattr(other, "value", other))

    def __matmul__(self, other):
        return self._op("matmul", self.value @ other.value)

    def sum(self):
        return FakeArray(self.value.sum())

    @staticmethod
    def _op(kind, value):
        fails = FAKE_FAILURES.get(kind)
        if fails:
            raise fails
        FakeDevice.log.append((kind, FakeDevice.current))
        return FakeArray(value)


FAKE_FAILURES: dict[str, BaseException] = {}


class CUDARuntimeError(RuntimeError):
    pass


def _fake_rng(seed):
    def random(shape, dtype=None):
        return FakeArray._op("random", np.zeros(shape))

    return types.SimpleNamespace(random=random)


@pytest.fixture
def fake_cupy(monkeypatch):
    """A ``cupy`` with two devices whose steps can be made to fail (``FAKE_FAILURES``)."""

    def device_count():
        if "count" in FAKE_FAILURES:
            raise FAKE_FAILURES["count"]
        return 2

    fake = types.ModuleType("cupy")
    fake.float32 = np.float32
    fake.cuda = types.SimpleNamespace(Device=FakeDevice,
                                      runtime=types.SimpleNamespace(getDeviceCount=device_count))
    fake.arange = lambda n, dtype=None: FakeArray(np.arange(n, dtype=dtype))
    fake.random = types.SimpleNamespace(default_rng=_fake_rng)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    FAKE_FAILURES.clear()
    FakeDevice.log, FakeDevice.current = [], 0
    portnn.backends.clear_cache()
    yield fake
    FAKE_FAILURES.clear()
    portnn.backends.clear_cache()


def test_self_check_runs_each_cuda_component_on_the_selected_device(fake_cupy):
    _cupy_check.self_check(1)
    assert [kind for kind, _ in FakeDevice.log] == ["elementwise", "elementwise", "matmul", "random",
                                                    "elementwise", "synchronize"]
    assert {dev for _, dev in FakeDevice.log} == {1}
    assert FakeDevice.current == 0  # restored


def test_cupy_device_spellings_normalise(fake_cupy):
    cupy = CuPy()
    for spec in ("cuda", "cuda:0", "0", 0, "CUDA", FakeDevice(0)):
        assert cupy.device_name(cupy.device(spec)) == "cuda:0", spec
    assert cupy.device_name(cupy.device("cuda:1")) == "cuda:1"
    with pytest.raises(BackendError, match=r"backend 'cupy' has no device 'cuda:5'; devices here: "
                                           r"\['cuda:0', 'cuda:1'\]"):
        cupy.device("cuda:5")


def test_cupy_activate_makes_the_device_current(fake_cupy):
    cupy = CuPy()
    be = portnn.Backend(name="cupy", device=FakeDevice(1), xp=None, library=cupy)
    with be.activate():
        assert FakeDevice.current == 1
        with portnn.Backend(name="cupy", device=FakeDevice(0), xp=None, library=cupy).activate():
            assert FakeDevice.current == 0
        assert FakeDevice.current == 1
    assert FakeDevice.current == 0
    assert str(be) == "cupy-cuda:1"  # a device name, not "<CUDA Device 1>"
    assert be == portnn.Backend(name="cupy", device=FakeDevice(1), xp=None, library=cupy)


def test_torch_device_spellings_normalise(torch):
    lib = Torch()
    assert lib.normalize("cuda") == "cuda:0" and lib.normalize(torch.device("cuda")) == "cuda:0"
    assert lib.normalize(torch.device("cuda", 1)) == "cuda:1" and lib.normalize("CPU") == "cpu"
    assert lib.device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match=r"has no device 'cuda:0'; devices here: \['cpu', 'meta'\]"):
            portnn.get_backend("torch", "cuda")
    else:
        assert portnn.get_backend("torch", "cuda") == portnn.get_backend("torch", "cuda:0")


def test_torch_defaults_to_the_cpu_where_cuda_is_available(torch, monkeypatch):
    """PyTorch's own rule: tensors are made on the CPU unless a device is named."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert Torch().default_device() == torch.device("cpu")
    portnn.backends.clear_cache()
    try:
        assert str(portnn.get_backend("torch")) == "torch-cpu"
    finally:
        portnn.backends.clear_cache()


def test_cupy_backend_accepts_a_cupy_device_object(fake_cupy, monkeypatch):
    """``cupy.cuda.Device`` is unhashable: the backend cache keys on the device's name."""
    with pytest.raises(TypeError, match="unhashable"):
        hash(FakeDevice(1))
    made = []
    monkeypatch.setattr(CuPy, "load", lambda self: made.append("load") or "xp")
    be = portnn.get_backend("cupy", FakeDevice(1))
    assert str(be) == "cupy-cuda:1" and be.device == FakeDevice(1)
    assert portnn.get_backend("cupy", "cuda:1") is be and made == ["load"]
    assert [kind for kind, _ in FakeDevice.log][-1] == "synchronize"  # device 1 was self-checked


def test_cache_clear_reruns_the_self_check(fake_cupy):
    """No self-check result outlives ``clear_cache``: a CUDA failure after it is reported as such."""
    with pytest.raises(BackendError, match="array namespace"):  # self-check passes; the stand-in
        portnn.get_backend("cupy")                               # has no asarray
    portnn.backends.clear_cache()
    FAKE_FAILURES["elementwise"] = RuntimeError("CUDA_ERROR_LAUNCH_FAILED")
    with pytest.raises(BackendError, match="elementwise kernel failed"):
        portnn.get_backend("cupy")


# --------------------------------------------------------------------------- CuPy's errors


def _machine(monkeypatch, driver_cuda, gpus=1, wheels=("cupy-cuda12x",), error=None):
    gpu = {"device": "cuda:0", "name": "Tesla T4", "memory_gib": 15.0, "compute_capability": (7, 5)}
    monkeypatch.setattr(_gpus, "probe_driver", lambda lib=None: {
        "driver_cuda": driver_cuda, "gpus": [gpu] * gpus, "error": error})
    monkeypatch.setattr(_cupy_check, "installed_cupy", lambda: list(wheels))


def _cupy_error(monkeypatch, fake_cupy, step, exc, **machine):
    _machine(monkeypatch, **machine)
    FAKE_FAILURES.clear()
    FAKE_FAILURES[step] = exc
    portnn.backends.clear_cache()
    with pytest.raises(BackendError) as err:
        portnn.get_backend("cupy")
    return str(err.value)


def test_no_driver(monkeypatch, fake_cupy):
    exc = CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")
    msg = _cupy_error(monkeypatch, fake_cupy, "count", exc, driver_cuda=None, gpus=0,
                      error="no NVIDIA driver: libcuda cannot be loaded (libcuda.so.1: not found)")
    assert "device count failed: CUDARuntimeError: cudaErrorInsufficientDriver" in msg
    assert "No NVIDIA driver or GPU here (no NVIDIA driver: libcuda cannot be loaded" in msg
    assert "Change runtime type" in msg and msg.endswith("PORTNN_BACKEND=numpy.")


def test_driver_too_old_for_the_wheel(monkeypatch, fake_cupy):
    exc = CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")
    msg = _cupy_error(monkeypatch, fake_cupy, "count", exc, driver_cuda=(12, 0))
    assert "The driver (CUDA 12.0) is too old for cupy-cuda12x: update the NVIDIA driver" in msg


def test_wheel_for_the_wrong_cuda_major(monkeypatch, fake_cupy):
    exc = CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")
    msg = _cupy_error(monkeypatch, fake_cupy, "count", exc, driver_cuda=(11, 4))
    assert "Wrong CUDA major: cupy-cuda12x is built for CUDA 12 but the driver supports CUDA 11.4" in msg
    assert "R525" in msg
    exc = RuntimeError("CuPy failed to load libnvrtc.so.11.2: OSError: cannot open shared object file")
    msg = _cupy_error(monkeypatch, fake_cupy, "elementwise", exc, driver_cuda=(12, 4))
    assert "elementwise kernel failed" in msg
    assert "Wrong CUDA major: cupy-cuda12x is built for CUDA 12 but asks for libnvrtc.so.11" in msg


def test_missing_cuda_libraries_suggest_ctk(monkeypatch, fake_cupy):
    exc = RuntimeError("CuPy failed to load libcublasLt.so.12: OSError: libcublasLt.so.12: cannot "
                       "open shared object file: No such file or directory")
    msg = _cupy_error(monkeypatch, fake_cupy, "matmul", exc, driver_cuda=(12, 4))
    assert "matmul (cuBLAS) failed: RuntimeError: CuPy failed to load libcublasLt.so.12" in msg
    assert ('Missing CUDA libraries (libcublasLt.so.12 not found): pip install "cupy-cuda12x[ctk]" '
            "(portnn[cuda12]) installs them, or install the CUDA 12.x toolkit") in msg
    # cuRAND's soname is .so.10 on CUDA 12 too: still "missing", not "wrong major".
    exc = OSError("libcurand.so.10: cannot open shared object file")
    msg = _cupy_error(monkeypatch, fake_cupy, "random", exc, driver_cuda=(13, 0), wheels=["cupy-cuda13x"])
    assert "random draw (cuRAND) failed" in msg and '"cupy-cuda13x[ctk]"' in msg


def test_two_cupy_packages(monkeypatch, fake_cupy):
    msg = _cupy_error(monkeypatch, fake_cupy, "elementwise", RuntimeError("CUDA_ERROR_INVALID_IMAGE"),
                      driver_cuda=(13, 0), wheels=["cupy-cuda12x", "cupy-cuda13x"])
    assert "More than one CuPy package is installed (cupy-cuda12x, cupy-cuda13x)" in msg


def test_broken_import_is_not_reported_as_not_installed(monkeypatch):
    def broken(name):
        raise ImportError("libcudart.so.12: cannot open shared object file: No such file or directory")

    _machine(monkeypatch, driver_cuda=(12, 2))
    monkeypatch.setattr(_cupy_check.importlib, "import_module", broken)
    portnn.backends.clear_cache()
    with pytest.raises(BackendError) as err:
        portnn.get_backend("cupy")
    msg = str(err.value)
    assert "not installed" not in msg and "import failed: ImportError: libcudart.so.12" in msg
    assert "Missing CUDA libraries (libcudart.so.12 not found)" in msg


def test_auto_warns_once_with_cupys_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # not installed
    monkeypatch.setattr(portnn.backends, "_warned_auto", False)
    portnn.backends.clear_cache()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert portnn.get_backend("auto").name == "numpy"
        assert portnn.get_backend("auto").name == "numpy"
        assert portnn.get_backend("auto", "cuda:1").name == "numpy"
    assert len(caught) == 1 and caught[0].category is RuntimeWarning
    assert ("backend 'auto' falls back to NumPy because backend 'cupy' needs the package 'cupy', "
            "which is not installed") in str(caught[0].message)
    portnn.backends.clear_cache()


# --------------------------------------------------------------------------- the driver probe


class FakeLibcuda:
    """libcuda's entry points, writing through the ctypes pointers as the real ones do."""

    def __init__(self, version, gpus, init_error=0):
        self.version, self.gpus, self.init_error = version, gpus, init_error

    def cuDriverGetVersion(self, ref):
        ref._obj.value = self.version
        return 0

    def cuInit(self, flags):
        return self.init_error

    def cuDeviceGetCount(self, ref):
        ref._obj.value = len(self.gpus)
        return 0

    def cuDeviceGet(self, ref, i):
        ref._obj.value = i
        return 0

    def cuDeviceGetName(self, buf, size, dev):
        buf.value = self.gpus[dev.value][0].encode()
        return 0

    def cuDeviceTotalMem_v2(self, ref, dev):
        ref._obj.value = self.gpus[dev.value][1]
        return 0

    def cuDeviceGetAttribute(self, ref, attribute, dev):
        ref._obj.value = self.gpus[dev.value][2][{75: 0, 76: 1}[attribute]]
        return 0


def test_probe_reads_a_k80_on_r470():
    """R470's nvidia-smi has no compute_cap field; the driver API answers on every branch."""
    lib = FakeLibcuda(11040, [("Tesla K80", 11996954624, (3, 7)), ("Tesla K80", 11996954624, (3, 7))])
    found = _gpus.probe_driver(lib)
    assert found["driver_cuda"] == (11, 4) and found["error"] is None
    assert found["gpus"][1] == {"device": "cuda:1", "name": "Tesla K80",
                                "memory_gib": pytest.approx(11.17, abs=0.01), "compute_capability": (3, 7)}


def test_probe_without_driver_or_gpu(monkeypatch):
    def missing(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(_gpus.ctypes, "CDLL", missing)
    found = _gpus.probe_driver()
    assert found == {"driver_cuda": None, "gpus": [],
                     "error": "no NVIDIA driver: libcuda cannot be loaded (libcuda.so.1: cannot open "
                              "shared object file)"}
    found = _gpus.probe_driver(FakeLibcuda(13000, [], init_error=100))
    assert found["driver_cuda"] == (13, 0) and found["error"] == "the driver reports CUDA_ERROR_NO_DEVICE"


# --------------------------------------------------------------------------- `info` advice


def _driver(cuda, *ccs, name="GPU"):
    return {"driver_cuda": cuda, "error": None,
            "gpus": [{"device": f"cuda:{i}", "name": name, "memory_gib": 16.0, "compute_capability": cc}
                     for i, cc in enumerate(ccs)]}


UNUSABLE = "backend 'cupy' needs the package 'cupy', which is not installed"


@pytest.mark.parametrize("driver, wheels, colab, wanted, unwanted", [
    # a working CuPy: nothing to install, never a second CuPy package
    (_driver((13, 0), (7, 5)), ["cupy-cuda12x"], False, "CuPy works here (cupy-cuda12x): nothing to install.",
     "pip install"),
    # Colab: CUDA 13 driver, sm_75+, cupy-cuda12x preinstalled: say so, advise no cupy-cuda13x
    (_driver((13, 0), (7, 5)), ["cupy-cuda12x"], True, "Colab: cupy-cuda12x is preinstalled; install no "
     "other CuPy package", "cupy-cuda13x"),
    (_driver(None), [], True, "Runtime > Change runtime type", "pip install"),
    # a CUDA 11 driver (450-524): cupy-cuda11x <= 13.6 with a CUDA 11.x toolkit, not cupy-cuda12x
    (_driver((11, 8), (8, 6)), [], False,
     'Driver CUDA 11.8: pip install "cupy-cuda11x<=13.6" (portnn[cuda11]) with a CUDA 11.x toolkit '
     "(11.2-11.8)", 'install "cupy-cuda12x'),
    (_driver((12, 2), (8, 6)), [], False,
     'Driver CUDA 12.2: pip install "cupy-cuda12x[ctk]" (portnn[cuda12]).', "cupy-cuda13x"),
    (_driver((13, 0), (9, 0)), [], False, 'pip install "cupy-cuda12x[ctk]" (portnn[cuda12]); or instead '
     '"cupy-cuda13x[ctk]" (portnn[cuda13]). One CuPy package only', "cupy-cuda11x"),
    (_driver((13, 0), (6, 1)), [], False, 'pip install "cupy-cuda12x[ctk]"', "cupy-cuda13x"),  # below sm_75
    # the K80 on R470 (CUDA 11.4)
    (_driver((11, 4), (3, 7)), [], False, 'sm_37 (Kepler, e.g. the K80): pip install "cupy-cuda11x<14" '
     "(portnn[cuda11]) with a CUDA 11.x toolkit (11.2-11.8) and driver R470", "cupy-cuda12x"),
    (_driver((10, 2), (3, 0)), [], False, "sm_30: no CuPy wheel supports GPUs below sm_35", "pip install"),
    (_driver((10, 2), (7, 0)), [], False, "supports CUDA 10.2 only: update it to R525", "cupy-cuda11x"),
    ({"driver_cuda": None, "gpus": [], "error": "no NVIDIA driver: libcuda cannot be loaded"}, [], False,
     "No NVIDIA GPU found (no NVIDIA driver", "pip install"),
    # an unusable CuPy package: remove it before installing the right one
    (_driver((11, 4), (7, 5)), ["cupy-cuda12x"], False, "pip uninstall -y cupy-cuda12x", "cupy-cuda13x"),
], ids=["working", "colab", "colab-cpu", "cuda11-driver", "cuda12-driver", "cuda13-sm90", "cuda13-sm61",
        "k80-r470", "sm30", "cuda10-driver", "no-driver", "wrong-wheel-installed"])
def test_advice(driver, wheels, colab, wanted, unwanted):
    reason = None if wanted.startswith("CuPy works") else UNUSABLE
    text = "\n".join(_gpus.advice(driver, reason, wheels, colab))
    assert wanted in text
    assert unwanted not in text


def test_info_prints_driver_gpus_and_advice(monkeypatch, capsys):
    import portnn.__main__ as cli

    monkeypatch.setattr(cli, "probe_driver", lambda: _driver((11, 4), (3, 7), name="Tesla K80"))
    monkeypatch.setattr(cli, "installed_cupy", lambda: [])
    monkeypatch.setattr(cli, "on_colab", lambda: False)
    monkeypatch.delenv("PORTNN_BACKEND", raising=False)
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "NVIDIA driver: supports CUDA 11.4\n" in out
    assert "GPU cuda:0: Tesla K80, 16.0 GiB, compute capability 3.7 (sm_37)\n" in out
    if portnn.backends.unavailable_reason("cupy") is not None:
        assert 'CuPy: sm_37 (Kepler, e.g. the K80): pip install "cupy-cuda11x<14"' in out
    assert "selected: numpy-cpu (chosen by default)" in out


def test_info_on_colab_names_the_preinstalled_cupy(monkeypatch, capsys):
    import portnn.__main__ as cli

    monkeypatch.setattr(cli, "probe_driver", lambda: _driver((13, 0), (7, 5), name="Tesla T4"))
    monkeypatch.setattr(cli, "installed_cupy", lambda: ["cupy-cuda12x"])
    monkeypatch.setattr(cli, "on_colab", lambda: True)
    monkeypatch.setattr(cli, "unavailable_reason", lambda name: None)
    monkeypatch.setattr(cli, "LIBRARIES", {"numpy": LIBRARIES["numpy"]})  # cupy is not really here
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "CuPy: CuPy works here (cupy-cuda12x): nothing to install." in out
    assert "cupy-cuda13x" not in out

"""Backend selection, precedence, devices and error messages."""

import json
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest

import portnn
from portnn.backends import BackendError, DeviceMismatchError, resolve


def _run(code: str, **env: str) -> dict:
    """Run code in a fresh interpreter with only the given PORTNN_* variables set."""
    import os

    environ = {k: v for k, v in os.environ.items() if not k.startswith("PORTNN_")}
    environ.update(env)
    out = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True,
                         timeout=120)
    return {"rc": out.returncode, "out": out.stdout, "err": out.stderr}


RESOLVE = ("import json, portnn; be, rule = portnn.backends.resolve(); "
           "print(json.dumps([be.name, be.device_name, rule]))")


def test_default_is_numpy(monkeypatch):
    monkeypatch.delenv("PORTNN_BACKEND", raising=False)
    monkeypatch.delenv("PORTNN_DEVICE", raising=False)
    be, rule = resolve()
    assert (be.name, be.device_name, rule) == ("numpy", "cpu", "default")


def test_env_variables_select_backend_and_device(torch):  # the torch fixture: skips without torch
    out = _run(RESOLVE, PORTNN_BACKEND="array_api_strict", PORTNN_DEVICE="device1")
    assert json.loads(out["out"]) == ["array_api_strict", "device1", "PORTNN_BACKEND"], out["err"]
    out = _run(RESOLVE, PORTNN_BACKEND="torch")
    assert json.loads(out["out"]) == ["torch", "cpu", "PORTNN_BACKEND"], out["err"]


def test_precedence_argument_over_use_over_set_over_env(torch):  # the torch fixture: skips without torch
    code = """
import json, portnn
from portnn.backends import resolve
seen = [resolve()[1]]
portnn.set_backend("torch")
seen.append([resolve()[0].name, resolve()[1]])
with portnn.use_backend("array_api_strict", "device1"):
    seen.append([resolve()[0].name, resolve()[1]])
    seen.append([resolve("numpy")[0].name, resolve("numpy")[1]])
    seen.append(portnn.get_backend("array_api_strict", "no_float64").device_name)
    seen.append(portnn.Dense(2, 2).backend.device_name)
seen.append(resolve()[0].name)
portnn.set_backend(None)
seen.append(resolve()[0].name)
print(json.dumps(seen))
"""
    out = _run(code, PORTNN_BACKEND="array_api_strict")
    assert json.loads(out["out"]) == [
        "PORTNN_BACKEND", ["torch", "set_backend"], ["array_api_strict", "use_backend"],
        ["numpy", "argument"], "no_float64", "device1", "torch", "array_api_strict"], out["err"]


def test_env_unknown_backend_fails_clearly():
    out = _run("import portnn; portnn.Dense(2, 2)", PORTNN_BACKEND="tensorflow")
    assert out["rc"] != 0
    assert "unknown backend 'tensorflow'; valid names: numpy, cupy, torch, array_api_strict" in out["err"]


def test_unknown_backend_lists_valid_names():
    with pytest.raises(BackendError, match="unknown backend 'mxnet'; valid names: numpy, cupy, torch, "
                                           "array_api_strict, jax, auto"):
        portnn.get_backend("mxnet")
    with pytest.raises(BackendError):
        portnn.set_backend("mxnet")
    assert resolve()[0].name == "numpy"  # a failed set_backend changes nothing


def test_missing_package_gives_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError, as when not installed
    portnn.backends.clear_cache()
    with pytest.raises(BackendError, match=r"not installed.*pip install cupy-cuda12x"):
        portnn.get_backend("cupy")


def test_cupy_without_usable_cuda_reports_cuda_error(monkeypatch):
    class CUDARuntimeError(RuntimeError):
        pass

    def no_device():
        raise CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    portnn.backends.clear_cache()
    with pytest.raises(BackendError) as err:
        portnn.get_backend("cupy")
    message = str(err.value)
    assert "CuPy is installed but CUDA is not usable" in message
    assert "cudaErrorNoDevice: no CUDA-capable device is detected" in message
    assert "PORTNN_BACKEND=numpy" in message


def test_cupy_here_is_a_clear_error_not_a_deep_traceback():
    out = _run("import portnn; portnn.Dense(2, 2)", PORTNN_BACKEND="cupy")
    if out["rc"] == 0:
        pytest.skip("CuPy with a usable CUDA device is present")
    last = out["err"].strip().splitlines()[-1]
    assert last.startswith("portnn.backends._errors.BackendError: backend 'cupy'"), last


def test_auto_picks_cupy_or_numpy():
    with warnings.catch_warnings():
        # The fallback's one-time warning has its own test (test_gpu.py).
        warnings.simplefilter("ignore", RuntimeWarning)
        be = portnn.get_backend("auto")
    expected = "cupy" if portnn.backends.unavailable_reason("cupy") is None else "numpy"
    assert be.name == expected


def test_bad_device_names_the_valid_ones():
    with pytest.raises(BackendError, match=r"no device 'device9'.*device1"):
        portnn.get_backend("array_api_strict", "device9")


def test_bad_torch_device_names_the_valid_ones(torch):
    with pytest.raises(BackendError, match=r"backend 'torch' has no device 'cuda:7'"):
        portnn.get_backend("torch", "cuda:7")


def test_available_backends_lists_devices():
    found = portnn.available_backends()
    assert found["numpy"] == ["cpu"]
    assert {"device1", "no_float64"} <= set(found.get("array_api_strict", []))
    if "torch" in found:
        assert {"cpu", "meta"} <= set(found["torch"])


def test_float64_rejected_where_missing():
    be = portnn.get_backend("array_api_strict", "no_float64")
    with pytest.raises(BackendError, match="does not support dtype float64"):
        be.asarray(np.ones(2), dtype="float64")
    with portnn.use_backend("array_api_strict", "no_float64"):
        with pytest.raises(BackendError, match="float64"):
            portnn.Dense(2, 2, dtype="float64")


def test_mixing_devices_names_layer_and_devices():
    with portnn.use_backend("array_api_strict", "device1"):
        layer = portnn.Dense(2, 3)
    x = portnn.get_backend("array_api_strict").asarray(np.ones((1, 2), np.float32))
    with pytest.raises(DeviceMismatchError, match=r"Dense: .*CPU_DEVICE.*array_api_strict-device1"):
        layer(x)


def test_numpy_layer_given_torch_tensor(torch):
    layer = portnn.Dense(2, 3)
    with pytest.raises(DeviceMismatchError, match=r"Dense: got an array on torch-cpu .* numpy-cpu"):
        layer(torch.ones((1, 2)))


def test_model_given_other_device_data_is_an_error(torch):
    model = portnn.Sequential([portnn.Dense(2, 1)], loss="mse", optimizer="sgd")
    with pytest.raises(DeviceMismatchError, match="numpy-cpu"):
        model.fit(torch.ones((4, 2)), np.ones((4, 1)), epochs=1, verbose=0)


def test_to_numpy_and_backend_of_round_trip(backend):
    x = backend.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert portnn.backends.backend_of(x) == backend
    np.testing.assert_array_equal(portnn.to_numpy(x), np.arange(6).reshape(2, 3))


def test_seeded_uniform_is_reproducible(backend):
    portnn.seed(5)
    a = portnn.to_numpy(backend.uniform((100,)))
    portnn.seed(5)
    b = portnn.to_numpy(backend.uniform((100,)))
    np.testing.assert_array_equal(a, b)
    assert 0.0 <= a.min() and a.max() < 1.0 and 0.3 < a.mean() < 0.7


def test_info_command_reports_backends_and_rule(torch):  # the torch fixture: skips without torch
    out = subprocess.run([sys.executable, "-m", "portnn", "info"], capture_output=True, text=True,
                         timeout=120, env={**__import__("os").environ, "PORTNN_BACKEND": "torch"})
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "portnn " in text and "numpy " in text and "array-api-compat" in text
    assert "numpy             usable, devices cpu" in text
    assert "pip install cupy-cuda12x" in text or "cupy              usable" in text
    assert "selected: torch-cpu (chosen by PORTNN_BACKEND)" in text
    assert "GPU" in text


def test_info_reports_a_bad_env_backend_instead_of_crashing(monkeypatch, capsys):
    import portnn.__main__ as cli

    monkeypatch.setenv("PORTNN_BACKEND", "tensorflow")
    assert cli.main(["info"]) == 0
    assert "selected: none -- unknown backend 'tensorflow'; valid names: numpy" in capsys.readouterr().out


def test_example_with_unusable_cupy_prints_the_reason_only():
    from pathlib import Path

    if portnn.backends.unavailable_reason("cupy") is None:
        pytest.skip("CuPy with a usable CUDA device is present")
    xor = Path(__file__).resolve().parent.parent / "examples" / "xor.py"
    out = _run(f"import runpy; runpy.run_path({str(xor)!r}, run_name='__main__')", PORTNN_BACKEND="cupy")
    assert out["rc"] == 1
    assert out["err"].strip().splitlines() == [f"portnn: {portnn.backends.unavailable_reason('cupy')}"]

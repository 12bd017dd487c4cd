"""benchmarks/gpu_check.py: its plan, time limits, results folder and no-CUDA exit; its steps on the CPU."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_examples import THREADS, synthetic_mnist

import portnn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402
from _parts import Log, junit_counts, run_part, write_json  # noqa: E402

PY = sys.executable


def test_without_cuda_it_says_why_and_exits_2():
    if gpu_check.cuda_backends()[0]:
        pytest.skip("this machine has a usable CUDA device")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[0] == "gpu_check: no usable CUDA device here, so nothing was run."
    assert lines[1] == f"  cupy: {portnn.backends.unavailable_reason('cupy')}"
    assert any(line.startswith("  torch: backend 'torch'") for line in lines)
    assert "python -m portnn info" in lines[-1]


def test_example_step_reports_accuracy_and_epoch_times(tmp_path, monkeypatch):
    for name, value in THREADS.items():
        monkeypatch.setenv(name, value)
    data = synthetic_mnist(tmp_path / "mnist", n_train=300, n_test=100)
    result = gpu_check.run_example("mnist_mlp.py", ["--data", str(data), "--epochs", "2", "--out",
                                                    str(tmp_path)], backend="numpy", device="cpu",
                                   cwd=tmp_path)
    assert result["rc"] == 0
    assert result["accuracy"] >= 0.9  # the synthetic digits are easy
    assert len(result["epoch_seconds"]) == 2 and all(s > 0 for s in result["epoch_seconds"])
    assert (tmp_path / "mnist_mlp.npz").is_file()
    assert result["status"] == "passed" and 0 < result["seconds"] < result["limit_s"] == 600
    # The record goes into gpu_check.json as it is, and its summary is one line.
    write_json(tmp_path / "gpu_check.json", {"parts": {"mnist_mlp": result}})
    assert json.loads((tmp_path / "gpu_check.json").read_text())["parts"]["mnist_mlp"] == result
    line = gpu_check.example_line("mnist_mlp", result)
    assert re.fullmatch(r"mnist_mlp: passed in [\d.]+ s \(limit 600 s\): test accuracy [\d.]+, "
                        r"epoch 1 [\d.]+ s, then [\d.]+ s/epoch", line), line


def test_benchmark_columns_train_the_same_network(torch):
    """Each column's epochs lower its training loss; the MLPs start at the chance loss ln(10)."""
    for kind, samples, batch in (("mlp", 256, 64), ("cnn", 64, 32)):
        x, y = gpu_check._data(kind, samples)
        runs = gpu_check.runners(kind, ["portnn-numpy", "torch-cpu"], x, y, batch)
        losses = {name: [run() for _ in range(6)] for name, run in runs.items()}
        for name, curve in losses.items():
            assert curve[-1] < curve[0] - 0.05, (kind, name, curve)
            if kind == "mlp":  # the CNN's he_uniform start on unit-variance noise is far from chance
                assert abs(curve[0] - np.log(10)) < 0.5, (kind, name, curve)
    rates = gpu_check.throughput("mlp", ["portnn-numpy", "torch-cpu"], samples=256, batch=128, rounds=1)
    assert set(rates) == {"portnn-numpy", "torch-cpu"} and all(r > 0 for r in rates.values())
    assert gpu_check.benchmark_columns([]) == ["portnn-numpy", "torch-cpu"]
    assert gpu_check.benchmark_columns(["cupy", "torch"]) == [
        "portnn-numpy", "portnn-cupy", "portnn-torch", "torch-cpu", "torch-cuda"]


# --------------------------------------------------------------------------- plan, limits, results


def test_dry_run_plans_at_most_300_s_and_lists_every_part(capsys, monkeypatch):
    monkeypatch.setattr(gpu_check, "cuda_backends", lambda: pytest.fail("--dry-run must not probe CUDA"))
    assert gpu_check.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    for part in ["probe", *gpu_check.PARTS]:
        assert re.search(rf"^  {part} +{gpu_check.LIMITS[part]} s  \S", out, re.MULTILINE), (part, out)
    assert set(gpu_check.LIMITS) == {"probe", *gpu_check.PARTS}
    assert {"info", "tests", "mnist_mlp", "mnist_cnn", "bench_mlp", "bench_cnn"} <= set(gpu_check.PARTS)
    total = int(re.search(r"^  total +(\d+) s planned", out, re.MULTILINE).group(1))
    assert total == sum(gpu_check.LIMITS.values()) <= 300
    assert f"data: {portnn.data.SHIPPED_MNIST}" in out
    # The tests part: the GPU ids and -k cuda, quiet, a JUnit XML, and never -rs (it floods the output) or -x.
    cmd = gpu_check.pytest_command(Path("x.xml"), [])
    assert "-q" in cmd and "--junitxml=x.xml" in cmd and cmd[cmd.index("-k") + 1] == "cuda"
    assert not {"-rs", "-x", "--exitfirst"} & set(cmd)
    assert "PORTNN_TEST_DEVICES=cupy-cuda:0,torch-cuda:0" in out


def test_a_part_over_its_limit_is_a_timeout_and_the_next_part_runs(tmp_path):
    log = Log(tmp_path / "log")
    started = time.perf_counter()
    slow = run_part("slow", [PY, "-c", "import time; print('started', flush=True); time.sleep(5)"], 1, log)
    assert slow["status"] == "timeout" and slow["limit_s"] == 1 and slow["rc"] != 0
    assert 0.7 < slow["seconds"] < 2 and time.perf_counter() - started < 2.5
    after = run_part("next", [PY, "-c", "print('next ran')"], 5, log)
    failed = run_part("bad", [PY, "-c", "import sys; sys.exit(3)"], 5, log)
    missing = run_part("missing", [str(tmp_path / "no-such-program")], 5, log)
    log.close()
    assert after["status"] == "passed" and after["rc"] == 0
    assert failed["status"] == "failed" and failed["rc"] == 3
    assert missing["status"] == "failed" and missing["rc"] is None
    text = (tmp_path / "log").read_text()
    assert "started" in text and "slow: timeout" in text and "next ran" in text  # output to the log


FAKE_JUNIT = """import sys
path = [a for a in sys.argv if a.startswith('--junitxml=')][0].split('=', 1)[1]
open(path, 'w').write('<testsuites><testsuite name="pytest">'
  '<testcase classname="tests.test_a" name="test_ok[cupy-cuda:0]"/>'
  '<testcase classname="tests.test_a" name="test_bad[torch-cuda:0]"><failure message="x"/></testcase>'
  '<testcase classname="tests.test_a" name="test_skip[cupy-cuda:0]"><skipped message="y"/></testcase>'
  '<testcase time="0.000" />'
  '</testsuite></testsuites>')
print('1 failed, 1 passed, 1 skipped (fake pytest output)')
sys.exit(1)
"""


def test_out_gets_the_log_json_and_xml(tmp_path, monkeypatch, capsys):
    """Every part stubbed by a tiny command: info over its limit, tests failing, benchmarks passing."""
    monkeypatch.setattr(gpu_check, "cuda_backends", lambda: (["cupy", "torch"], {}))
    monkeypatch.setitem(gpu_check.LIMITS, "info", 1)
    monkeypatch.setattr(gpu_check, "info_command", lambda: [PY, "-c", "import time; time.sleep(5)"])
    monkeypatch.setattr(gpu_check, "pytest_command", lambda junit, extra: [PY, "-c", FAKE_JUNIT,
                                                                           f"--junitxml={junit}"])
    rates = {"portnn-numpy": 1000.0, "portnn-cupy": 8000.0, "torch-cpu": 2000.0, "torch-cuda": 10000.0}
    line = gpu_check.RATES + json.dumps(rates)
    bench = [PY, "-c", f"print('report'); print({line!r})"]
    monkeypatch.setattr(gpu_check, "bench_command", lambda *a: bench)
    out = tmp_path / "out"
    assert gpu_check.main(["--out", str(out), "--skip", "examples"]) == 1
    stdout = capsys.readouterr().out.splitlines()
    assert stdout[-1] == "gpu_check: FAILED: info (timeout), tests (failed)"
    assert len(stdout) <= 12 and not any("fake pytest output" in s for s in stdout)  # the detail: the log
    assert any(s.startswith("tests: failed in") and "1 passed, 1 failed, 0 errors, 1 skipped of 3" in s
               for s in stdout), stdout
    log = (out / "gpu_check.log").read_text()
    assert "fake pytest output" in log and all(s in log for s in stdout)
    assert (out / "gpu_check.xml").is_file()
    report = json.loads((out / "gpu_check.json").read_text())
    parts = report["parts"]
    assert report["exit_status"] == 1 and report["planned_s"] == sum(gpu_check.LIMITS.values())
    assert parts["probe"]["status"] == "passed"
    assert parts["probe"]["usable"] == ["cupy-cuda:0", "torch-cuda:0"]
    assert parts["info"]["status"] == "timeout" and parts["info"]["limit_s"] == 1
    assert parts["tests"]["counts"] == {"tests": 3, "passed": 1, "failed": 1, "errors": 0, "skipped": 1,
                                        "failing": ["tests.test_a::test_bad[torch-cuda:0]"]}
    assert parts["mnist_mlp"]["status"] == parts["mnist_cnn"]["status"] == "skipped"
    for part in ("bench_mlp", "bench_cnn"):
        assert parts[part]["status"] == "passed" and parts[part]["samples_per_s"] == rates
        assert parts[part]["ratios"]["portnn-cupy/portnn-numpy"] == 8.0
        assert parts[part]["ratios"]["torch-cuda/torch-cpu"] == 5.0
        assert parts[part]["ratios"]["portnn-cupy/torch-cuda"] == 0.8
    assert all(isinstance(p.get("seconds", 0), float | int) for p in parts.values())


def test_without_cuda_out_still_says_why(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "cuda_backends", lambda: ([], {"cupy": "no driver", "torch": "no CUDA"}))
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("gpu_check: no usable CUDA device here")
    assert "cupy: no driver" in (tmp_path / "gpu_check.log").read_text()
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["exit_status"] == 2 and report["unusable"]["torch"] == "no CUDA"


def test_benchmark_subprocess_prints_its_rates(capsys):
    assert gpu_check.main(["--bench", "mlp", "--columns", "portnn-numpy", "--samples", "128", "--batch", "64",
                           "--rounds", "1"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith(gpu_check.RATES)
    rates = json.loads(last[len(gpu_check.RATES):])
    assert set(rates) == {"portnn-numpy"} and rates["portnn-numpy"] > 0
    assert junit_counts(Path("no-such.xml")) == {}

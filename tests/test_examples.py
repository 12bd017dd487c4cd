"""Every example runs in a subprocess with a tiny budget and must clear an accuracy floor."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import portnn

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MNIST_DIR = portnn.data.SHIPPED_MNIST  # data/mnist, committed with the project
SHARED_MNIST = MNIST_DIR  # the older name, still imported by tests/test_distributed.py
EPOCH_LINE = re.compile(r"^epoch 1/\d+ error=\d+\.\d{6}", re.MULTILINE)
# Tiny problems: one BLAS/OpenMP thread each avoids oversubscribing a small, busy machine.
THREADS = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def run(script: str, *flags: str, backend: str = "numpy", cwd: Path) -> str:
    """Run ``examples/<script>`` on ``backend``; fail with its output if it exits non-zero."""
    env = {**os.environ, **THREADS, "PORTNN_BACKEND": backend, "MPLBACKEND": "Agg"}
    env.pop("PORTNN_DEVICE", None)
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *flags], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{script} {' '.join(flags)} on {backend} failed:\n{output}"
    assert EPOCH_LINE.search(output), f"no classic epoch line in:\n{output}"
    return output


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict", "torch"])
def test_xor(tmp_path, backend):
    if backend == "torch":
        pytest.importorskip("torch")
    out = run("xor.py", "--epochs", "300", "--verbose", "100", "--min-accuracy", "1",
              backend=backend, cwd=tmp_path)
    preds = [float(v) for v in re.findall(r"xor \d -> (-?[\d.]+)", out)]
    assert len(preds) == 4
    np.testing.assert_allclose(preds, [0, 1, 1, 0], atol=0.2)


def test_xor_floor_fails(tmp_path):
    """--min-accuracy is enforced: one epoch cannot learn XOR."""
    proc = subprocess.run([sys.executable, str(EXAMPLES / "xor.py"), "--epochs", "1",
                           "--min-accuracy", "1"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, **THREADS, "PORTNN_BACKEND": "numpy"}, timeout=120)
    assert proc.returncode == 1 and "below --min-accuracy" in proc.stderr


def test_sum_of_squares(tmp_path):
    out = run("sum_of_squares.py", "--iterations", "1500", "--verbose", "500", "--out", str(tmp_path),
              "--min-accuracy", "1", cwd=tmp_path)
    assert "sum of squares=" in out
    assert (tmp_path / "sum_of_squares.png").stat().st_size > 1000


def test_moons(tmp_path):
    run("moons.py", "--epochs", "2000", "--hidden", "1", "3", "--verbose", "1000",
        "--out", str(tmp_path), "--min-accuracy", "0.85", cwd=tmp_path)
    assert (tmp_path / "moons.png").stat().st_size > 1000


def test_architecture(tmp_path):
    pytest.importorskip("torch")
    out = run("architecture.py", "--epochs", "300", "--verbose", "100", "--out", str(tmp_path),
              "--min-accuracy", "0.9", cwd=tmp_path)
    # The PyTorch twin starts from the same weights: the cost histories agree.
    gap = float(re.search(r"largest cost difference over the run ([\d.e+-]+)", out).group(1))
    assert gap < 1e-3, out


# --------------------------------------------------------------------------- MNIST


def synthetic_mnist(folder: Path, n_train: int = 600, n_test: int = 200) -> Path:
    """IDX files in MNIST's layout where each digit is a bright block at its own place, plus noise."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(labels):
            r, c = 2 + 8 * (k // 3), 2 + 8 * (k % 3)
            images[i, r:r + 7, c:c + 7] = 255
        portnn.data.write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        portnn.data.write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory) -> tuple[Path, bool]:
    """The real MNIST shipped in data/mnist if present, else small synthetic IDX files."""
    if all((MNIST_DIR / f"{name}.gz").is_file() or (MNIST_DIR / name).is_file()
           for name in portnn.data.MNIST_FILES):
        return MNIST_DIR, True
    return synthetic_mnist(tmp_path_factory.mktemp("mnist")), False


def test_mnist_mlp(tmp_path, mnist_dir):
    folder, real = mnist_dir
    out = run("mnist_mlp.py", "--data", str(folder), "--epochs", "2", "--limit", "2200", "--val", "200",
              "--test-limit", "2000", "--out", str(tmp_path),
              "--min-accuracy", "0.8" if real else "0.9", cwd=tmp_path)
    assert "test accuracy=" in out and "Trainable params: 235,146" in out
    assert re.search(r"epoch 1/2 error=\S+ accuracy=\S+ val_error=\S+ val_accuracy=\S+", out)
    model = portnn.Sequential.load(tmp_path / "mnist_mlp.npz")
    assert [type(layer).__name__ for layer in model.layers][::2] == ["Dense"] * 3
    # EarlyStopping restored the best validation epoch, which ModelCheckpoint saved: the same weights.
    best = portnn.Sequential.load(tmp_path / "mnist_mlp_best.npz")
    for a, b in zip(model.layers, best.layers, strict=True):
        for key in a.params:
            np.testing.assert_array_equal(portnn.to_numpy(a.params[key]), portnn.to_numpy(b.params[key]))


def test_mnist_cnn(tmp_path, mnist_dir):
    folder, real = mnist_dir
    out = run("mnist_cnn.py", "--data", str(folder), "--epochs", "1", "--limit", "640",
              "--test-limit", "500", "--batch-size", "32", "--out", str(tmp_path),
              "--min-accuracy", "0.6" if real else "0.9", cwd=tmp_path)
    assert "test accuracy=" in out
    assert (tmp_path / "mnist_cnn.npz").is_file()


def test_mnist_offline_message(tmp_path):
    """Without data and without network the example stops with the loader's instructions."""
    env = {**os.environ, **THREADS, "PORTNN_BACKEND": "numpy", "HOME": str(tmp_path)}
    env.pop("PORTNN_DATA_DIR", None)
    code = ("import portnn.data as d, runpy, sys\n"
            "def refuse(url, timeout): raise OSError('offline')\n"
            "d._fetch = refuse\n"
            f"sys.argv = ['mnist_mlp.py', '--data', {str(tmp_path / 'empty')!r}]\n"
            f"sys.path.insert(0, {str(EXAMPLES)!r})\n"
            f"runpy.run_path({str(EXAMPLES / 'mnist_mlp.py')!r}, run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    message = proc.stderr.strip()
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    assert "train-images-idx3-ubyte" in message and "--data" in message and "PORTNN_DATA_DIR" in message


def test_autoencoder_mnist(tmp_path, mnist_dir):
    folder, _ = mnist_dir
    out = run("autoencoder_mnist.py", "--data", str(folder), "--epochs", "3", "--limit", "2000",
              "--test-limit", "200", "--batch-size", "32", "--out", str(tmp_path), cwd=tmp_path)
    found = re.search(r"test reconstruction MSE=([\d.]+) \(the noisy input's: ([\d.]+)\)", out)
    assert found and float(found.group(1)) < 0.6 * float(found.group(2)), out  # it does denoise
    assert (tmp_path / "autoencoder_mnist.png").stat().st_size > 1000


def test_sentiment_synthetic(tmp_path):
    out = run("sentiment.py", "--epochs", "6", "--out", str(tmp_path), "--min-accuracy", "0.85", cwd=tmp_path)
    assert "synthetic reviews: 2000 training, 500 test" in out
    assert (tmp_path / "sentiment.png").stat().st_size > 1000


def test_sentiment_reads_the_aclimdb_layout(tmp_path):
    """A tiny folder in aclImdb's layout: read, tokenised, trained (no floor: 8 reviews)."""
    for part in ("train", "test"):
        for label, text in (("pos", "A great, wonderful film.<br />Loved it"),
                            ("neg", "Awful. Boring and bad")):
            (tmp_path / "aclImdb" / part / label).mkdir(parents=True)
            for i in range(2):
                (tmp_path / "aclImdb" / part / label / f"{i}_7.txt").write_text(f"{text} {i}")
    out = run("sentiment.py", "--data", str(tmp_path / "aclImdb"), "--epochs", "1", "--maxlen", "8",
              "--vocab", "20", "--out", str(tmp_path), cwd=tmp_path)
    assert "IMDB reviews from" in out and "4 training, 4 test" in out and "test accuracy=" in out


def test_resnet_mnist(tmp_path, mnist_dir):
    folder, real = mnist_dir
    out = run("resnet_mnist.py", "--data", str(folder), "--epochs", "1", "--limit", "640",
              "--test-limit", "300", "--batch-size", "32", "--out", str(tmp_path),
              "--min-accuracy", "0.5" if real else "0.8", cwd=tmp_path)
    assert "Add" in out and "Connected to" in out and "test accuracy=" in out
    assert isinstance(portnn.Model.load(tmp_path / "resnet_mnist.npz"), portnn.Model)
    assert (tmp_path / "resnet_mnist.png").stat().st_size > 1000


def test_siamese_mnist(tmp_path, mnist_dir):
    folder, real = mnist_dir
    out = run("siamese_mnist.py", "--data", str(folder), "--epochs", "1", "--limit", "2000",
              "--test-limit", "500", "--out", str(tmp_path), "--min-accuracy", "0.65", cwd=tmp_path)
    assert "0: Sequential (call 2)" in out and "shared" in out and "test accuracy=" in out
    assert (tmp_path / "siamese_mnist.png").stat().st_size > 1000

"""portnn.data: IDX/MNIST loading (files written here, never the network), moons, one-hot, batching."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

import portnn
from portnn import data

NAMES = list(data.MNIST_FILES)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Every test here is offline: a download attempt fails at once, as on a machine without internet."""
    def refuse(url, timeout):
        raise OSError(f"network disabled in tests ({url})")
    monkeypatch.setattr(data, "_fetch", refuse)
    monkeypatch.delenv("PORTNN_DATA_DIR", raising=False)


@pytest.fixture
def no_shipped(tmp_path, monkeypatch):
    """As in an installed wheel: no data/mnist beside the package, so the cache and downloads are used."""
    monkeypatch.setattr(data, "SHIPPED_MNIST", tmp_path / "no-shipped-copy")


def write_mnist(folder, n_train=12, n_test=5, gz=True, rows=28):
    """Four small IDX files with the standard names; returns the arrays written."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, rows, rows), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, rows, rows), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        data.write_idx(folder / (name + (".gz" if gz else "")), a)
    return arrays


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
def test_idx_round_trip(tmp_path, suffix, dtype):
    a = (np.arange(24) - 5).astype(dtype).reshape(2, 3, 4)
    if dtype == "uint8":
        a = np.arange(24, dtype=dtype).reshape(2, 3, 4)
    path = tmp_path / f"a.idx{suffix}"
    data.write_idx(path, a)
    back = data.read_idx(path)
    assert back.dtype == a.dtype and back.shape == a.shape
    np.testing.assert_array_equal(back, a)


def test_idx_layout_is_big_endian(tmp_path):
    path = tmp_path / "x"
    data.write_idx(path, np.array([1, 256], np.int32))
    # magic 00 00 0C 01, one dim of 2, then 1 and 256 big-endian
    assert path.read_bytes() == bytes.fromhex("00000c01" "00000002" "00000001" "00000100")


def test_idx_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"PK\x03\x04" + bytes(20))
    with pytest.raises(data.DataError, match="not an IDX file.*magic"):
        data.read_idx(path)


@pytest.mark.parametrize("cut", [2, 6, 30])
def test_idx_truncated(tmp_path, cut):
    path = tmp_path / "x"
    data.write_idx(path, np.zeros((3, 4, 4), np.uint8))
    path.write_bytes(path.read_bytes()[:-cut])
    with pytest.raises(data.DataError, match=f"{path.name}.*truncated"):
        data.read_idx(path)


def test_idx_trailing_bytes(tmp_path):
    path = tmp_path / "x"
    data.write_idx(path, np.zeros(3, np.uint8))
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(data.DataError, match="trailing"):
        data.read_idx(path)


def test_truncated_gzip(tmp_path):
    path = tmp_path / "x.gz"
    data.write_idx(path, np.arange(1000, dtype=np.int32))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(data.DataError, match="gzip"):
        data.read_idx(path)


def test_write_idx_rejects_unknown_dtype(tmp_path):
    with pytest.raises(data.DataError, match="no IDX type"):
        data.write_idx(tmp_path / "x", np.zeros(2, np.uint16))


# --------------------------------------------------------------------------- MNIST


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_from_path(tmp_path, gz):
    written = write_mnist(tmp_path, gz=gz)
    (x, y), (xt, yt) = data.load_mnist(tmp_path, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(x, written["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(y, written["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(xt, written["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(yt, written["t10k-labels-idx1-ubyte"])
    assert x.dtype == np.uint8 and x.shape == (12, 28, 28) and y.shape == (12,)


def test_load_mnist_normalize_flatten(tmp_path):
    written = write_mnist(tmp_path)
    (x, _), (xt, _) = data.load_mnist(tmp_path, normalize=True, flatten=True)
    assert x.dtype == np.float32 and x.shape == (12, 784) and xt.shape == (5, 784)
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_allclose(x * 255, written["train-images-idx3-ubyte"].reshape(12, -1), atol=1e-4)


def test_load_mnist_env_var(tmp_path, monkeypatch):
    write_mnist(tmp_path)
    monkeypatch.setenv("PORTNN_DATA_DIR", str(tmp_path))
    (x, _), _ = data.load_mnist(cache_dir=tmp_path / "cache")
    assert x.shape == (12, 28, 28)


def test_load_mnist_missing_files_offline_message(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as info:
        data.load_mnist(tmp_path, cache_dir=tmp_path / "cache")
    msg = str(info.value)
    assert "t10k-labels-idx1-ubyte" in msg and "train-images-idx3-ubyte" in msg
    assert "train-labels-idx1-ubyte" not in msg  # only what is missing
    assert "PORTNN_DATA_DIR" in msg and str(tmp_path) in msg and "network disabled" in msg


def test_load_mnist_no_download(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_fetch", lambda url, timeout: pytest.fail("must not download"))
    with pytest.raises(FileNotFoundError, match="download=False") as info:
        data.load_mnist(tmp_path, download=False, cache_dir=tmp_path / "cache")
    assert all(name in str(info.value) for name in NAMES)


def test_download_checks_sha256_and_caches(tmp_path, monkeypatch, no_shipped):
    arrays = write_mnist(tmp_path / "src")
    served = {name: (tmp_path / "src" / f"{name}.gz").read_bytes() for name in NAMES}
    # Pretend the small files are the standard ones so their checksums pass.
    sums = {name: hashlib.sha256(gzip.decompress(served[name])).hexdigest() for name in NAMES}
    monkeypatch.setattr(data, "MNIST_FILES", sums)
    urls = []

    def fetch(url, timeout):
        urls.append(url)
        assert timeout <= 10
        return served[url.rsplit("/", 1)[1][:-3]]

    monkeypatch.setattr(data, "_fetch", fetch)
    cache = tmp_path / "cache"
    (x, _), _ = data.load_mnist(cache_dir=cache)
    np.testing.assert_array_equal(x, arrays["train-images-idx3-ubyte"])
    assert len(urls) == 4 and all(u.startswith(data.MNIST_MIRRORS[0]) for u in urls)
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in NAMES)
    data.load_mnist(cache_dir=cache)  # now from the cache
    assert len(urls) == 4


def test_download_checksum_mismatch(tmp_path, monkeypatch, no_shipped):
    write_mnist(tmp_path / "src")
    served = {name: (tmp_path / "src" / f"{name}.gz").read_bytes() for name in NAMES}
    monkeypatch.setattr(data, "_fetch", lambda url, timeout: served[url.rsplit("/", 1)[1][:-3]])
    cache = tmp_path / "cache"
    with pytest.raises(FileNotFoundError, match="sha256") as info:
        data.load_mnist(cache_dir=cache)
    assert data.MNIST_FILES[NAMES[0]] in str(info.value)
    assert not cache.exists() or not any(cache.iterdir())  # nothing bad is cached


def test_verify_local_files(tmp_path):
    write_mnist(tmp_path)
    with pytest.raises(data.DataError, match="sha256"):
        data.load_mnist(tmp_path, verify=True)


def test_load_mnist_mismatched_counts(tmp_path):
    write_mnist(tmp_path)
    data.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(data.DataError, match="do not match"):
        data.load_mnist(tmp_path)


# --------------------------------------------------------------------------- the shipped copy


def test_shipped_mnist_is_the_standard_files():
    """data/mnist, committed with the project, decompresses to the standard files (a bad copy fails here)."""
    assert data.SHIPPED_MNIST == Path(portnn.__file__).resolve().parent.parent / "data" / "mnist"
    for name, digest in data.MNIST_FILES.items():
        raw = gzip.decompress((data.SHIPPED_MNIST / f"{name}.gz").read_bytes())
        assert hashlib.sha256(raw).hexdigest() == digest, name


def test_load_mnist_finds_the_shipped_copy_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # an empty home: no cache
    monkeypatch.setattr(data, "_fetch", lambda url, timeout: pytest.fail("must not download"))
    assert data.mnist_folders() == [data.SHIPPED_MNIST, tmp_path / ".cache" / "portnn" / "mnist"]
    (x, y), (xt, yt) = data.load_mnist(download=False)
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8 and xt.shape == (10000, 28, 28)
    assert y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert yt[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert {p.parent for p in data.locate_mnist().values()} == {data.SHIPPED_MNIST}
    assert not (tmp_path / ".cache").exists()


def test_an_explicit_folder_replaces_the_shipped_copy(tmp_path):
    """A wrong --data or $PORTNN_DATA_DIR is reported, not quietly swapped for the shipped MNIST."""
    with pytest.raises(FileNotFoundError, match="download=False"):
        data.load_mnist(tmp_path / "empty", download=False, cache_dir=tmp_path / "cache")
    assert data.SHIPPED_MNIST not in data.mnist_folders(tmp_path, cache_dir=tmp_path / "cache")


# --------------------------------------------------------------------------- toy data, one_hot, batching


def test_make_moons():
    x, y = data.make_moons(101, noise=0.1, seed=3)
    assert x.shape == (101, 2) and x.dtype == np.float32 and y.dtype == np.int64
    assert sorted(np.unique(y)) == [0, 1] and (y == 0).sum() == 50
    x2, y2 = data.make_moons(101, noise=0.1, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, data.make_moons(101, noise=0.1, seed=4)[0])


def test_make_moons_geometry():
    # sklearn's moons without noise: the outer arc on the unit circle, the inner one centred at (1, 0.5).
    x, y = data.make_moons(40, noise=0.0, seed=0)
    outer, inner = x[y == 0].astype(np.float64), x[y == 1].astype(np.float64)
    np.testing.assert_allclose(np.hypot(outer[:, 0], outer[:, 1]), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.hypot(inner[:, 0] - 1, inner[:, 1] - 0.5), 1.0, atol=1e-6)
    assert outer[:, 1].min() >= -1e-6 and inner[:, 1].max() <= 0.5 + 1e-6


def test_make_moons_follows_portnn_seed():
    portnn.seed(5)
    a = data.make_moons(20)
    portnn.seed(5)
    b = data.make_moons(20)
    np.testing.assert_array_equal(a[0], b[0])


def test_one_hot():
    out = data.one_hot(np.array([0, 2, 1, 2]), 3)
    np.testing.assert_array_equal(out, np.eye(3, dtype=np.float32)[[0, 2, 1, 2]])
    assert out.dtype == np.float32
    assert data.one_hot(np.array([1.0, 0.0]), 2, dtype="float64").dtype == np.float64
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        data.one_hot([0, 3], 3)
    with pytest.raises(ValueError, match="1-D"):
        data.one_hot(np.zeros((2, 2), int), 3)
    with pytest.raises(ValueError, match="whole"):
        data.one_hot([0.5], 3)


def test_one_hot_matches_array_api_extra(torch):
    import array_api_extra as xpx
    labels = np.array([3, 0, 1])
    ref = xpx.one_hot(torch.asarray(labels), 4)
    np.testing.assert_array_equal(data.one_hot(labels, 4), ref.numpy())


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("n,batch_size", [(10, 3), (9, 3), (4, 10)])
def test_batches_cover_every_sample_once(n, batch_size, shuffle):
    x = np.arange(n * 2).reshape(n, 2)
    y = np.arange(n)
    got = list(data.batches(x, y, batch_size, shuffle=shuffle, seed=0))
    assert [len(b[1]) for b in got[:-1]] == [batch_size] * (len(got) - 1)
    seen = np.concatenate([yb for _, yb in got])
    assert sorted(seen) == list(range(n))
    if not shuffle:
        np.testing.assert_array_equal(seen, np.arange(n))
    for xb, yb in got:
        np.testing.assert_array_equal(xb, x[yb])


def test_batches_seeded_and_drop_last():
    x, y = np.arange(20), np.arange(20)
    first = [yb.tolist() for _, yb in data.batches(x, y, 6, seed=1)]
    assert first == [yb.tolist() for _, yb in data.batches(x, y, 6, seed=1)]
    assert first != [yb.tolist() for _, yb in data.batches(x, y, 6, seed=2)]
    assert sum(first, []) != list(range(20))
    assert [len(yb) for _, yb in data.batches(x, y, 6, seed=1, drop_last=True)] == [6, 6, 6]
    with pytest.raises(ValueError, match="batch_size"):
        next(data.batches(x, y, 0))
    with pytest.raises(ValueError, match="samples"):
        next(data.batches(x, y[:3], 2))


def test_train_test_split():
    x, y = np.arange(20).reshape(10, 2), np.arange(10)
    xtr, xte, ytr, yte = data.train_test_split(x, y, test_size=0.3, seed=0)
    assert len(yte) == 3 and len(ytr) == 7
    assert sorted(np.concatenate([ytr, yte])) == list(range(10))
    np.testing.assert_array_equal(xte, x[yte])
    with pytest.raises(ValueError, match="test_size"):
        data.train_test_split(x, y, test_size=0)

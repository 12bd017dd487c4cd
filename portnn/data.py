"""Data on the host: MNIST (IDX files), toy data sets, one-hot encoding and batching.

Everything here returns NumPy arrays; :meth:`portnn.Sequential.fit` moves them
to the device once. For labels already on a device use
``array_api_extra.one_hot`` instead of :func:`one_hot`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from . import _checks
from .backends import init_rng

__all__ = ["DataError", "MNIST_FILES", "SHIPPED_MNIST", "batches", "load_mnist", "locate_mnist",
           "make_moons", "mnist_folders", "one_hot", "read_idx", "train_test_split", "write_idx"]


class DataError(ValueError):
    """A data file is malformed, truncated or fails its checksum."""


# The standard files (decompressed) and their sha256; either the plain file or ``<name>.gz`` is read.
MNIST_FILES = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
DOWNLOAD_TIMEOUT_S = 5.0
# The copy shipped in the repository (data/mnist beside the package): used in a checkout or an
# editable install; an installed wheel has no such folder and goes on to the cache.
SHIPPED_MNIST = Path(__file__).resolve().parent.parent / "data" / "mnist"

# IDX type byte -> big-endian dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# --------------------------------------------------------------------------- IDX files


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzipped or plain) into a native-endian NumPy array.

    Raises :class:`DataError` naming the file for a bad magic number or a
    size that does not match its header.

    Example:
        >>> images = portnn.data.read_idx("t10k-images-idx3-ubyte.gz")  # (10000, 28, 28) uint8
    """
    return _parse_idx(_read_bytes(Path(path)), str(path))


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``."""
    array = np.asarray(array)
    code = next((c for c, t in _IDX_TYPES.items() if np.dtype(t).newbyteorder("=") == array.dtype),
                None)
    if code is None:
        raise DataError(f"write_idx: dtype {array.dtype} has no IDX type; valid: "
                        f"{sorted(str(np.dtype(t).newbyteorder('=')) for t in _IDX_TYPES.values())}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + array.astype(_IDX_TYPES[code]).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip file ({exc}); delete it and "
                        f"download it again") from exc


def _parse_idx(raw: bytes, name: str) -> np.ndarray:
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{name}: not an IDX file (magic number {raw[:4].hex() or 'missing'}; "
                        f"expected 0000 then a type byte in "
                        f"{[hex(c) for c in _IDX_TYPES]} and the number of dimensions)")
    dtype, ndim = np.dtype(_IDX_TYPES[raw[2]]), raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{name}: truncated IDX header ({len(raw)} bytes for {ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = 4 + 4 * ndim + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DataError(f"{name}: {kind}: header says shape {shape} ({expected} bytes) but the "
                        f"file holds {len(raw)} bytes; delete it and download it again")
    data = np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


# --------------------------------------------------------------------------- MNIST


def load_mnist(path: str | os.PathLike[str] | None = None, download: bool = True,
               cache_dir: str | os.PathLike[str] | None = None, normalize: bool = False,
               flatten: bool = False, verify: bool = False,
               ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """MNIST as ``((x_train, y_train), (x_test, y_test))``.

    Images are uint8 ``(N, 28, 28)`` in 0..255 (float32 in [0, 1] with
    ``normalize=True``; ``(N, 784)`` with ``flatten=True``); labels are uint8
    ``(N,)``. The four standard IDX files, each plain or gzipped, are read from
    ``path``, else ``$PORTNN_DATA_DIR``, else the repository's ``data/mnist``
    (:data:`SHIPPED_MNIST`, when it holds them), then from ``cache_dir``
    (default ``~/.cache/portnn/mnist``). Files missing there are downloaded into
    ``cache_dir`` when ``download`` is true and checked against their sha256;
    if that fails, :class:`FileNotFoundError` says which files to put where.
    ``verify=True`` checksums local files too (off by default, so that
    look-alikes such as Fashion-MNIST, which use the same names, load).

    Example:
        >>> (x, y), (x_test, y_test) = portnn.data.load_mnist("data/mnist", normalize=True)
    """
    folders = mnist_folders(path, cache_dir)
    cache = folders[-1]
    found = {name: _find(name, folders) for name in MNIST_FILES}
    missing = [name for name, file in found.items() if file is None]
    if missing and download:
        failures = []
        for name in missing:
            try:
                found[name] = _download(name, cache)
            except (OSError, DataError) as exc:  # URLError and socket timeouts are OSErrors
                failures.append(f"{name}: {exc}")
                break  # offline: one file's failed mirrors are enough, don't wait on the others
        missing = [name for name, file in found.items() if file is None]
        if missing:
            raise FileNotFoundError(_missing_message(missing, folders, failures))
    elif missing:
        raise FileNotFoundError(_missing_message(missing, folders, ["download=False"]))
    arrays = {}
    for name, file in found.items():
        raw = _read_bytes(file)
        if verify:
            _check_sha256(raw, name, str(file))
        arrays[name] = _parse_idx(raw, str(file))
    x_train, y_train = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    x_test, y_test = arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "t10k")):
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise DataError(f"MNIST {split}: images {x.shape} and labels {y.shape} do not match "
                            f"(expected (N, rows, cols) and (N,)); check {found}")
    if normalize:
        x_train, x_test = x_train.astype(np.float32) / 255.0, x_test.astype(np.float32) / 255.0
    if flatten:
        x_train, x_test = x_train.reshape(x_train.shape[0], -1), x_test.reshape(x_test.shape[0], -1)
    return (x_train, y_train), (x_test, y_test)


def mnist_folders(path: str | os.PathLike[str] | None = None,
                  cache_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders :func:`load_mnist` searches, in order; the last is the cache it downloads into.

    ``path``, else ``$PORTNN_DATA_DIR``, else :data:`SHIPPED_MNIST` when it holds
    all four files; then ``cache_dir`` (default ``~/.cache/portnn/mnist``). A
    folder that was named explicitly replaces the shipped copy, so a wrong
    ``path`` is reported rather than quietly swapped for MNIST.
    """
    cache = Path(cache_dir or Path.home() / ".cache" / "portnn" / "mnist").expanduser()
    first = path or os.environ.get("PORTNN_DATA_DIR")
    if first:
        return [Path(first).expanduser(), cache]
    if all(_find(name, [SHIPPED_MNIST]) for name in MNIST_FILES):
        return [SHIPPED_MNIST, cache]
    return [cache]


def locate_mnist(path: str | os.PathLike[str] | None = None,
                 cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Path | None]:
    """Each MNIST file's name -> the file :func:`load_mnist` would read (``None``: missing); no download.

    Example:
        >>> {str(p.parent) for p in portnn.data.locate_mnist().values() if p}  # the folder(s) used
    """
    folders = mnist_folders(path, cache_dir)
    return {name: _find(name, folders) for name in MNIST_FILES}


def _find(name: str, folders: list[Path]) -> Path | None:
    for folder in folders:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _check_sha256(raw: bytes, name: str, where: str) -> None:
    digest = hashlib.sha256(raw).hexdigest()
    if digest != MNIST_FILES[name]:
        raise DataError(f"{where}: sha256 of the decompressed {name} is {digest}, expected "
                        f"{MNIST_FILES[name]}; the file is corrupt or not the standard MNIST")


def _fetch(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def _download(name: str, cache: Path) -> Path:
    """Fetch ``<name>.gz`` from the first mirror that answers, check it, store it in ``cache``."""
    errors = []
    for mirror in MNIST_MIRRORS:
        url = f"{mirror}{name}.gz"
        try:
            raw = _fetch(url, DOWNLOAD_TIMEOUT_S)
            data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
            _check_sha256(data, name, url)
        except (OSError, EOFError, DataError) as exc:
            errors.append(f"{url}: {exc}")
            continue
        cache.mkdir(parents=True, exist_ok=True)
        target = cache / f"{name}.gz"
        tmp = target.with_name(target.name + ".part")
        with gzip.open(tmp, "wb") as f:  # written beside the target and renamed: never half a file
            f.write(data)
        tmp.replace(target)
        return target
    raise OSError("; ".join(errors))


def _missing_message(missing: list[str], folders: list[Path], failures: list[str]) -> str:
    names = "\n".join(f"  {n}  (or {n}.gz)" for n in missing)
    looked = ", ".join(str(f) for f in folders)
    why = "\n".join(f"  {f}" for f in failures)
    return (f"MNIST: these files were not found in {looked}:\n{names}\n"
            f"and could not be downloaded:\n{why}\n"
            f"Put the four standard MNIST IDX files (gzipped or not) in one folder and pass "
            f"load_mnist(path=...) or set PORTNN_DATA_DIR to that folder, or copy them to "
            f"{folders[-1]}.")


# --------------------------------------------------------------------------- toy data and batching


def make_moons(n_samples: int = 200, noise: float = 0.2,
               seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles, as ``sklearn.datasets.make_moons`` (shuffled).

    Returns ``x`` float32 ``(n_samples, 2)`` and ``y`` int64 ``(n_samples,)``
    in {0, 1}. ``seed=None`` draws from portnn's generator (see :func:`portnn.seed`).

    Example:
        >>> x, y = portnn.data.make_moons(200, noise=0.2, seed=0)
    """
    n_samples = _checks.integer("make_moons", "n_samples", n_samples)
    noise = _checks.nonnegative("make_moons", "noise", noise)
    rng = init_rng() if seed is None else np.random.default_rng(seed)
    n_out = n_samples // 2
    n_in = n_samples - n_out
    t_out, t_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
    x = np.concatenate([np.stack([np.cos(t_out), np.sin(t_out)], axis=1),
                        np.stack([1 - np.cos(t_in), 1 - np.sin(t_in) - 0.5], axis=1)])
    y = np.concatenate([np.zeros(n_out, np.int64), np.ones(n_in, np.int64)])
    order = rng.permutation(n_samples)
    x, y = x[order], y[order]
    if noise:
        x = x + rng.normal(scale=noise, size=x.shape)
    return x.astype(np.float32), y


def one_hot(labels: np.ndarray, num_classes: int, dtype: str = "float32") -> np.ndarray:
    """Integer labels ``(N,)`` to a one-hot host array ``(N, num_classes)``.

    Example:
        >>> portnn.data.one_hot([0, 2], 3)  # [[1, 0, 0], [0, 0, 1]]
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"one_hot: labels must be 1-D, got shape {labels.shape}")
    if labels.dtype.kind not in "iub" and not np.all(labels == np.round(labels)):
        raise ValueError("one_hot: labels must be whole numbers")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"one_hot: labels must lie in [0, {num_classes}), got "
                         f"[{labels.min()}, {labels.max()}]")
    out = np.zeros((labels.shape[0], num_classes), dtype)
    out[np.arange(labels.shape[0]), labels] = 1
    return out


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool = True,
            seed: int | None = None, drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(x_batch, y_batch)`` covering every sample once (the last batch may be short).

    With ``shuffle`` the order comes from ``seed``, or portnn's generator when
    it is ``None``; ``drop_last`` skips a short final batch.

    Example:
        >>> for xb, yb in portnn.data.batches(x, y, 32, seed=0): ...
    """
    n = len(x)
    if len(y) != n:
        raise ValueError(f"batches: x has {n} samples but y has {len(y)}")
    if batch_size < 1:
        raise ValueError(f"batches: batch_size must be >= 1, got {batch_size}")
    rng = init_rng() if seed is None else np.random.default_rng(seed)
    order = rng.permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]


def train_test_split(x: np.ndarray, y: np.ndarray, test_size: float | int = 0.25,
                     seed: int | None = None, shuffle: bool = True,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split into ``x_train, x_test, y_train, y_test`` (the scikit-learn order).

    ``test_size`` is a fraction in (0, 1) or a number of samples.
    """
    n = len(x)
    if len(y) != n:
        raise ValueError(f"train_test_split: x has {n} samples but y has {len(y)}")
    n_test = int(np.ceil(test_size * n)) if isinstance(test_size, float) else int(test_size)
    if not 0 < n_test < n:
        raise ValueError(f"train_test_split: test_size={test_size} leaves {n_test} of {n} samples "
                         f"for testing; it must leave at least one on each side")
    rng = init_rng() if seed is None else np.random.default_rng(seed)
    order = rng.permutation(n) if shuffle else np.arange(n)
    test, train = order[:n_test], order[n_test:]
    return x[train], x[test], y[train], y[test]


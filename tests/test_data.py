"""Tests for convgrad.data: IDX parsing, MNIST checks, checksums, search order, downloads, normalization.

The loader's own tests build tiny IDX files here (``idx_bytes``) and shrink the split sizes
and checksums to match them; the network is replaced by fake mirrors. Tests on the real
dataset read it from ``$CONVGRAD_DATA`` or ``<root>/shared/data/mnist`` next to the repo
and are skipped, with the reason shown, when it is not there.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from convgrad import data
from tests.mnist_location import MNIST_MISSING, SHARED_MNIST, mnist_dir

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
ALL_NAMES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

IDX_TYPE_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(array: np.ndarray, type_code: int | None = None) -> bytes:
    """An IDX file for ``array``: 0, 0, type code, ndim, big-endian uint32 sizes, big-endian items."""
    code = IDX_TYPE_CODES[array.dtype.type] if type_code is None else type_code
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_dataset(directory: Path, arrays: dict[str, np.ndarray], *, compress: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        content = idx_bytes(array)
        if compress:
            (directory / f"{name}.gz").write_bytes(gzip.compress(content, mtime=0))
        else:
            (directory / name).write_bytes(content)
    return directory


def publish_checksums(monkeypatch: pytest.MonkeyPatch, arrays: dict[str, np.ndarray]) -> None:
    """Make ``arrays`` the 'published' MNIST: their SHA-256s, and no .gz MD5 that could match."""
    for name, array in arrays.items():
        monkeypatch.setitem(data.SHA256, name, hashlib.sha256(idx_bytes(array)).hexdigest())
        monkeypatch.setitem(data.GZ_MD5, name, "0" * 32)


def network_forbidden(url, timeout=None):
    raise AssertionError(f"unexpected network access: {url}")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No $CONVGRAD_DATA, a private cache under tmp_path, and no network unless a test fakes it."""
    monkeypatch.delenv(data.DATA_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(data, "_urlopen", network_forbidden)


@pytest.fixture
def tiny(monkeypatch) -> dict[str, np.ndarray]:
    """A 3 + 2 image MNIST with 28x28 uint8 images; split sizes and checksums patched to match it."""
    rng = np.random.default_rng(0)
    arrays = {
        TRAIN_IMAGES: rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        TRAIN_LABELS: np.array([5, 0, 9], np.uint8),
        TEST_IMAGES: rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
        TEST_LABELS: np.array([7, 2], np.uint8),
    }
    monkeypatch.setattr(data, "SPLIT_SIZES", {"train": 3, "test": 2})
    publish_checksums(monkeypatch, arrays)
    return arrays


def assert_same_arrays(mnist: data.MNIST, arrays: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(mnist.train_images, arrays[TRAIN_IMAGES])
    np.testing.assert_array_equal(mnist.train_labels, arrays[TRAIN_LABELS])
    np.testing.assert_array_equal(mnist.test_images, arrays[TEST_IMAGES])
    np.testing.assert_array_equal(mnist.test_labels, arrays[TEST_LABELS])


# ---------------------------------------------------------------- read_idx


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("dtype", list(IDX_TYPE_CODES))
def test_read_idx_round_trips_every_type(tmp_path, dtype, compress):
    array = (np.arange(24).reshape(2, 3, 4) * 3 - 20).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        array = array / 7
    write_dataset(tmp_path, {"x": array}, compress=compress)
    parsed = data.read_idx(tmp_path / ("x.gz" if compress else "x"))
    assert parsed.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(parsed, array)


def test_read_idx_detects_gzip_by_magic_not_extension(tmp_path):
    array = np.arange(10, dtype=np.uint8)
    (tmp_path / "gzipped.idx").write_bytes(gzip.compress(idx_bytes(array)))
    (tmp_path / "raw.gz").write_bytes(idx_bytes(array))
    np.testing.assert_array_equal(data.read_idx(tmp_path / "gzipped.idx"), array)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "raw.gz"), array)


LABELS_10 = idx_bytes(np.arange(10, dtype=np.uint8))


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (b"\x01" + LABELS_10[1:], ["bad magic", "0x0100"]),
        (LABELS_10[:2] + b"\x0a" + LABELS_10[3:], ["type code 0x0A"]),
        (LABELS_10[:-1], ["truncated", "10 items", "holds 9 bytes"]),
        (LABELS_10 + b"\x00\x00", ["trailing bytes", "10 items", "holds 12 bytes"]),
        (bytes([0, 0, 8, 3, 0, 0, 0, 1]), ["truncated header", "3 dimensions"]),
        (b"\x00\x00", ["truncated", "2 bytes"]),
    ],
    ids=["bad-magic", "type-code", "truncated", "trailing", "short-header", "tiny"],
)
def test_read_idx_rejects_malformed_files_naming_them(tmp_path, content, fragments, compress):
    path = tmp_path / ("t10k-labels-idx1-ubyte.gz" if compress else "t10k-labels-idx1-ubyte")
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(ValueError) as info:
        data.read_idx(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_read_idx_rejects_corrupt_gzip(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(LABELS_10)[:-12])
    with pytest.raises(ValueError, match="corrupt gzip") as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------- MNIST layout and checksums


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_load_mnist_reads_a_directory(tmp_path, tiny, compress):
    directory = write_dataset(tmp_path / "mnist", tiny, compress=compress)
    mnist = data.load_mnist(directory)
    assert_same_arrays(mnist, tiny)
    assert mnist.source == directory


@pytest.mark.parametrize(
    ("name", "bad", "fragment"),
    [
        (TRAIN_IMAGES, np.zeros((3, 27, 28), np.uint8), "(3, 28, 28)"),
        (TRAIN_IMAGES, np.zeros((3, 784), np.uint8), "(3, 28, 28)"),
        (TRAIN_IMAGES, np.zeros((3, 28, 28), np.int16), "uint8"),
        (TEST_IMAGES, np.zeros((3, 28, 28), np.uint8), "(2, 28, 28)"),
        (TRAIN_LABELS, np.zeros((3, 1), np.uint8), "(3,)"),
        (TEST_LABELS, np.zeros(3, np.uint8), "(2,)"),
        (TRAIN_LABELS, np.array([1, 10, 2], np.uint8), "label 10 at index 1"),
    ],
    ids=["image-27x28", "image-flat", "image-int16", "test-count", "labels-2d", "labels-count", "label-10"],
)
def test_load_mnist_rejects_files_that_are_not_mnist(tmp_path, monkeypatch, tiny, name, bad, fragment):
    arrays = {**tiny, name: bad}
    publish_checksums(monkeypatch, arrays)  # only the layout is wrong
    directory = write_dataset(tmp_path / "mnist", arrays)
    with pytest.raises(data.MNISTError) as info:
        data.load_mnist(directory)
    assert name in str(info.value)
    assert fragment in str(info.value)


def test_checksum_mismatch_names_file_and_both_digests(tmp_path, monkeypatch, tiny):
    directory = write_dataset(tmp_path / "mnist", tiny)
    monkeypatch.setitem(data.SHA256, TRAIN_LABELS, "ab" * 32)
    with pytest.raises(data.MNISTError) as info:
        data.load_mnist(directory)
    message = str(info.value)
    assert str(directory / f"{TRAIN_LABELS}.gz") in message
    assert "ab" * 32 in message
    assert hashlib.sha256(idx_bytes(tiny[TRAIN_LABELS])).hexdigest() in message


def test_original_gz_is_accepted_by_its_md5(tmp_path, monkeypatch, tiny):
    directory = write_dataset(tmp_path / "mnist", tiny)
    gz_md5 = hashlib.md5((directory / f"{TEST_IMAGES}.gz").read_bytes()).hexdigest()
    monkeypatch.setitem(data.SHA256, TEST_IMAGES, "ab" * 32)
    monkeypatch.setitem(data.GZ_MD5, TEST_IMAGES, gz_md5)
    np.testing.assert_array_equal(data.load_mnist(directory).test_images, tiny[TEST_IMAGES])


# ---------------------------------------------------------------- where the files come from


def test_explicit_dir_beats_env_var_and_cache(tmp_path, monkeypatch, tiny):
    explicit = write_dataset(tmp_path / "explicit", tiny)
    monkeypatch.setenv(data.DATA_ENV_VAR, str(write_dataset(tmp_path / "env", tiny)))
    write_dataset(data.mnist_cache_dir(), tiny)
    assert data.load_mnist(explicit).source == explicit


def test_env_var_beats_cache(tmp_path, monkeypatch, tiny):
    from_env = write_dataset(tmp_path / "env", tiny)
    monkeypatch.setenv(data.DATA_ENV_VAR, str(from_env))
    write_dataset(data.mnist_cache_dir(), tiny)
    assert data.load_mnist().source == from_env


def test_cache_is_under_xdg_cache_home(tmp_path, monkeypatch, tiny):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "elsewhere"))
    cache = write_dataset(tmp_path / "elsewhere" / "convgrad" / "mnist", tiny)
    assert data.load_mnist().source == cache


@pytest.mark.parametrize("xdg", [None, "relative/cache"], ids=["unset", "relative"])
def test_cache_defaults_to_home_dot_cache(tmp_path, monkeypatch, tiny, xdg):
    monkeypatch.chdir(tmp_path)  # were the relative path used, it would land here, not in the repo
    if xdg is None:
        monkeypatch.delenv("XDG_CACHE_HOME")
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", xdg)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cache = write_dataset(tmp_path / "home" / ".cache" / "convgrad" / "mnist", tiny)
    assert data.load_mnist().source == cache


@pytest.mark.parametrize("origin", ["argument", "env"])
def test_named_dir_missing_a_file_raises_and_never_downloads(tmp_path, monkeypatch, tiny, origin):
    directory = write_dataset(tmp_path / "partial", {n: a for n, a in tiny.items() if n != TEST_LABELS})
    write_dataset(data.mnist_cache_dir(), tiny)  # a complete cache must not be used instead
    if origin == "env":
        monkeypatch.setenv(data.DATA_ENV_VAR, str(directory))
    with pytest.raises(data.MNISTNotFoundError) as info:
        data.load_mnist(directory if origin == "argument" else None, download=True)
    message = str(info.value)
    assert str(directory) in message
    assert TEST_LABELS in message
    assert not any(present in message for present in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES))
    assert ("given by $CONVGRAD_DATA" if origin == "env" else "given by the data_dir argument") in message


@pytest.mark.parametrize("location", ["cache", "named"])
def test_corrupt_file_error_names_it_and_keeps_it(tmp_path, monkeypatch, tiny, location):
    directory = data.mnist_cache_dir() if location == "cache" else tmp_path / "named"
    write_dataset(directory, tiny)
    corrupt = directory / f"{TRAIN_IMAGES}.gz"
    corrupt.write_bytes(corrupt.read_bytes()[: corrupt.stat().st_size // 2])
    with pytest.raises(data.MNISTError) as info:
        data.load_mnist(directory if location == "named" else None)
    assert str(corrupt) in str(info.value)
    assert corrupt.exists()
    assert (location == "cache") == ("delete it" in str(info.value))


# ---------------------------------------------------------------- downloads


class FakeResponse(io.BytesIO):
    """What urlopen returns: a readable context manager with headers. ``fail_after`` reads, it raises."""

    def __init__(self, payload: bytes, *, on_exhausted=None, fail_after: int | None = None):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}
        self.on_exhausted, self.fail_after, self.reads = on_exhausted, fail_after, 0

    def read(self, size=-1):
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        chunk = super().read(size)
        if not chunk and self.on_exhausted:
            self.on_exhausted()
        return chunk


class FakeMirrors:
    """Stands in for ``urlopen``: records each (url, timeout), answers with ``serve(url)``."""

    def __init__(self, serve):
        self.serve, self.calls = serve, []

    def __call__(self, url, timeout=None):
        self.calls.append((url, timeout))
        return self.serve(url)


def file_name(url: str) -> str:
    return url.rsplit("/", 1)[1].removesuffix(".gz")


def test_download_tries_mirrors_in_turn_and_lands_atomically(monkeypatch, capsys, tiny):
    cache = write_dataset(data.mnist_cache_dir(), {TRAIN_LABELS: tiny[TRAIN_LABELS]})
    listings = {}  # the cache's contents once each download has been fully streamed

    def serve(url):
        if url.startswith(data.MIRRORS[0]):
            raise urllib.error.URLError("mirror down")
        name = file_name(url)
        snapshot = lambda: listings.setdefault(name, set(os.listdir(cache)))
        return FakeResponse(gzip.compress(idx_bytes(tiny[name])), on_exhausted=snapshot)

    mirrors = FakeMirrors(serve)
    monkeypatch.setattr(data, "_urlopen", mirrors)
    mnist = data.load_mnist(progress=True)

    assert_same_arrays(mnist, tiny)
    assert mnist.source == cache
    fetched = [n for n in ALL_NAMES if n != TRAIN_LABELS]
    assert [url for url, _ in mirrors.calls] == [m + f"{n}.gz" for n in fetched for m in data.MIRRORS[:2]]
    assert all(timeout for _, timeout in mirrors.calls)
    final = {f"{n}.gz" for n in ALL_NAMES}
    assert sorted(os.listdir(cache)) == sorted(final)
    for name in fetched:  # streamed into a temporary file in the cache, renamed only afterwards
        assert f"{name}.gz" not in listings[name]
        assert listings[name] - final
    assert f"{TRAIN_IMAGES}.gz" in capsys.readouterr().err


@pytest.mark.parametrize("failure", ["checksum", "connection-reset"])
def test_failed_download_leaves_nothing_in_the_cache(monkeypatch, tiny, failure):
    wrong = gzip.compress(idx_bytes(np.zeros((3, 28, 28), np.uint8)))
    if failure == "checksum":
        serve = lambda url: FakeResponse(wrong)
    else:
        serve = lambda url: FakeResponse(gzip.compress(idx_bytes(tiny[file_name(url)])), fail_after=1)
    monkeypatch.setattr(data, "_urlopen", FakeMirrors(serve))
    with pytest.raises(data.MNISTNotFoundError) as info:
        data.load_mnist(progress=False)
    assert os.listdir(data.mnist_cache_dir()) == []
    expected = "checksum mismatch" if failure == "checksum" else "connection reset"
    for mirror in data.MIRRORS:
        assert f"{mirror}{TRAIN_IMAGES}.gz: " in str(info.value)
    assert expected in str(info.value)


def test_offline_error_says_what_to_put_where(monkeypatch):
    def unreachable(url):
        raise urllib.error.URLError("Name or service not known")

    mirrors = FakeMirrors(unreachable)
    monkeypatch.setattr(data, "_urlopen", mirrors)
    with pytest.raises(data.MNISTNotFoundError) as info:
        data.load_mnist(progress=False)
    message = str(info.value)
    for name in ALL_NAMES:
        assert name in message
    assert str(data.mnist_cache_dir()) in message
    for mirror in data.MIRRORS:
        assert f"{mirror}{TRAIN_IMAGES}.gz: <urlopen error Name or service not known>" in message
    assert "--data-dir" in message
    assert "CONVGRAD_DATA" in message
    assert len(mirrors.calls) == len(data.MIRRORS)  # gives up after the first file no mirror serves


def test_download_false_raises_without_network():
    with pytest.raises(data.MNISTNotFoundError) as info:  # the autouse fixture fails any urlopen call
        data.load_mnist(download=False)
    message = str(info.value)
    assert "download=False" in message
    assert str(data.mnist_cache_dir()) in message
    for name in ALL_NAMES:
        assert name in message


# ---------------------------------------------------------------- normalize and prepare


def test_normalize_defaults_to_the_statistics_of_the_images():
    out, mean, std = data.normalize(np.array([[0, 255], [255, 0]], np.uint8))
    assert (mean, std) == (0.5, 0.5)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[-1.0, 1.0], [1.0, -1.0]])


def test_normalize_uses_the_given_mean_and_std():
    images = np.arange(0, 256, 5, dtype=np.uint8).reshape(-1, 1)
    out, mean, std = data.normalize(images, 0.25, 0.125)
    assert (mean, std) == (0.25, 0.125)
    np.testing.assert_allclose(out, (images / 255.0 - 0.25) / 0.125, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("images", "fragment"),
    [(np.zeros(4, np.float32), "float32"), (np.full(4, 7, np.uint8), "std=0.0")],
    ids=["not-uint8", "constant"],
)
def test_normalize_rejects_bad_input(images, fragment):
    with pytest.raises(ValueError, match=fragment):
        data.normalize(images)


def test_prepare_standardizes_the_test_set_with_training_statistics():
    train = np.zeros((2, 28, 28), np.uint8)
    train[0] = 255  # training pixels: half 0, half 1 -> mean 0.5, std 0.5
    mnist = data.MNIST(
        train_images=train,
        train_labels=np.array([3, 4], np.uint8),
        test_images=np.full((1, 28, 28), 255, np.uint8),
        test_labels=np.array([9], np.uint8),
        source=Path("."),
    )
    train_x, train_y, test_x, test_y = data.prepare(mnist)
    assert train_x.shape == (2, 28, 28) and test_x.shape == (1, 28, 28)
    assert train_x.dtype == test_x.dtype == np.float32
    np.testing.assert_array_equal(test_x, 1.0)  # (1 - 0.5) / 0.5, not 0 as its own statistics would give
    np.testing.assert_array_equal(train_x[1], -1.0)
    assert train_y.dtype == test_y.dtype == np.int32
    assert train_y.tolist() == [3, 4] and test_y.tolist() == [9]


# ---------------------------------------------------------------- the real dataset

REAL_MNIST = mnist_dir()


@pytest.fixture(scope="module")
def real() -> data.MNIST:
    if REAL_MNIST is None:
        pytest.skip(MNIST_MISSING)
    return data.load_mnist(REAL_MNIST, download=False)


@pytest.fixture(scope="module")
def real_prepared(real):
    return data.prepare(real)


def test_real_shapes_dtypes_and_counts(real):
    assert real.train_images.shape == (60_000, 28, 28) and real.train_images.dtype == np.uint8
    assert real.test_images.shape == (10_000, 28, 28) and real.test_images.dtype == np.uint8
    assert real.train_labels.shape == (60_000,) and real.test_labels.shape == (10_000,)
    assert real.source == REAL_MNIST


def test_real_label_histograms_are_the_published_ones(real):
    # Class counts of the MNIST training and test sets (digits 0..9), as widely published.
    train_counts = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    test_counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.bincount(real.train_labels, minlength=10).tolist() == train_counts
    assert np.bincount(real.test_labels, minlength=10).tolist() == test_counts
    assert sum(train_counts) == 60_000 and sum(test_counts) == 10_000


def test_real_training_pixel_statistics(real):
    mean = real.train_images.mean() / 255
    std = real.train_images.std() / 255
    assert abs(mean - 0.1307) < 1e-3
    assert abs(std - 0.3081) < 1e-3
    _, normalize_mean, normalize_std = data.normalize(real.train_images)
    assert normalize_mean == pytest.approx(mean, rel=1e-9)
    assert normalize_std == pytest.approx(std, rel=1e-9)


def test_real_prepared_data_is_standardized_with_training_statistics(real, real_prepared):
    train_x, train_y, test_x, test_y = real_prepared
    assert train_x.mean(dtype=np.float64) == pytest.approx(0.0, abs=1e-4)
    assert train_x.std(dtype=np.float64) == pytest.approx(1.0, abs=1e-4)
    mean, std = real.train_images.mean() / 255, real.train_images.std() / 255
    np.testing.assert_allclose(test_x[:500], (real.test_images[:500] / 255 - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(train_y, real.train_labels)
    np.testing.assert_array_equal(test_y, real.test_labels)


MNIST_DIR = mnist_dir()  # resolved at import: the isolating fixture hides $CONVGRAD_DATA from each test


def test_published_sha256sums_are_the_ones_checked():
    places = [d / "SHA256SUMS" for d in (MNIST_DIR, SHARED_MNIST) if d is not None]
    sums_file = next((f for f in places if f.is_file()), None)
    if sums_file is None:
        pytest.skip(f"SHA256SUMS not found in {', '.join(map(str, places))}")
    published = dict(reversed(line.split()) for line in sums_file.read_text().splitlines() if line.strip())
    assert published == data.SHA256

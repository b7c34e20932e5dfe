"""MNIST: find the four IDX files, download them if needed, verify their checksums, parse them.

Read top to bottom: the published facts (file names, checksums, mirrors); the two error
types; ``load_mnist`` and where it looks; ``normalize`` and ``prepare``; the IDX parser
``read_idx``; then the private steps ``load_mnist`` is made of (find, download, check).

Where the files come from, in order:

1. a directory named explicitly: the ``data_dir`` argument, else ``$CONVGRAD_DATA``.
   It is authoritative: if files are missing there, ``load_mnist`` raises and lists them.
   It never downloads into it and never falls back to the cache, so a typo in a path
   cannot silently load (or fetch) something else;
2. otherwise the user cache, ``$XDG_CACHE_HOME/convgrad/mnist`` (``~/.cache/convgrad/mnist``
   when ``XDG_CACHE_HOME`` is unset or relative);
3. files missing from the cache are downloaded into it from ``MIRRORS``, tried in turn.

In a directory each file may be gzipped (``NAME.gz``, preferred when both exist) or raw
(``NAME``); gzip is recognised by its magic bytes, not by the extension.

Only numpy and the standard library are used; nothing is cached between calls.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
import os
import struct
import tempfile
import urllib.request
import zlib
from http.client import HTTPException
from pathlib import Path

import numpy as np

from convgrad.progress import Progress

__all__ = [
    "FILE_NAMES",
    "GZ_MD5",
    "MIRRORS",
    "MNIST",
    "SHA256",
    "MNISTError",
    "MNISTNotFoundError",
    "load_mnist",
    "mnist_cache_dir",
    "normalize",
    "prepare",
    "read_idx",
]

# file name -> (split, kind). The split sizes and image shape are the published ones.
_FILES = {
    "train-images-idx3-ubyte": ("train", "images"),
    "train-labels-idx1-ubyte": ("train", "labels"),
    "t10k-images-idx3-ubyte": ("test", "images"),
    "t10k-labels-idx1-ubyte": ("test", "labels"),
}
FILE_NAMES: tuple[str, ...] = tuple(_FILES)
SPLIT_SIZES = {"train": 60_000, "test": 10_000}
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10

# SHA-256 of each DECOMPRESSED file, as published in SHA256SUMS next to the data.
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# MD5 of the original ``.gz`` files as the mirrors serve them (the values torchvision checks).
# A re-compressed copy has other gzip bytes, so it is accepted through ``SHA256`` instead.
GZ_MD5 = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
DATA_ENV_VAR = "CONVGRAD_DATA"
DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK_BYTES = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b"
# The opener downloads go through; tests replace it with a fake mirror.
_urlopen = urllib.request.urlopen

# IDX type code -> (name in the IDX spec, big-endian numpy dtype).
_IDX_TYPES = {
    0x08: ("ubyte", ">u1"),
    0x09: ("byte", ">i1"),
    0x0B: ("short", ">i2"),
    0x0C: ("int", ">i4"),
    0x0D: ("float", ">f4"),
    0x0E: ("double", ">f8"),
}


class MNISTError(ValueError):
    """A file is there but its contents are wrong: not IDX, truncated, wrong shape, wrong checksum."""


class MNISTNotFoundError(FileNotFoundError):
    """The files are not where ``load_mnist`` looked, and could not be downloaded."""


@dataclasses.dataclass(frozen=True)
class MNIST:
    """The four MNIST arrays as stored in the files (raw uint8, read-only), and where they came from.

    Shapes: ``train_images (60000, 28, 28) uint8``, ``train_labels (60000,) uint8``,
    ``test_images (10000, 28, 28) uint8``, ``test_labels (10000,) uint8``; pixels are 0..255
    (0 is background), labels 0..9. ``source`` is the directory the files were read from.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: Path


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None, *, download: bool = True, progress: bool = True
) -> MNIST:
    """Load MNIST from ``data_dir``, ``$CONVGRAD_DATA`` or the user cache, downloading into the cache if needed.

    Every file is parsed as IDX, checked against the MNIST layout (28x28 uint8 images,
    labels 0..9, 60000/10000 per split) and its checksum verified before it is returned:
    SHA-256 of the decompressed bytes (``SHA256``), or MD5 of the original ``.gz`` (``GZ_MD5``).
    See the module docstring for the search order; a directory named explicitly is never
    downloaded into.

    Args:
      data_dir: directory holding the four files (``NAME.gz`` or raw ``NAME``); defaults to
        ``$CONVGRAD_DATA``, then to :func:`mnist_cache_dir`.
      download: fetch files missing from the cache from ``MIRRORS``; ``False`` raises instead.
      progress: show a progress bar on stderr while downloading.

    Returns:
      An :class:`MNIST` of raw uint8 arrays, ``(60000, 28, 28)``, ``(60000,)``,
      ``(10000, 28, 28)``, ``(10000,)``.

    Raises:
      MNISTNotFoundError: files missing and not downloadable; the message lists the file
        names, the directories searched, the mirrors tried with their errors, and the fix.
      MNISTError: a file is corrupt, truncated, the wrong shape, or fails its checksum.
    """
    if data_dir is not None:
        directory, origin = Path(data_dir).expanduser(), "the data_dir argument"
    elif os.environ.get(DATA_ENV_VAR):
        directory, origin = Path(os.environ[DATA_ENV_VAR]).expanduser(), f"${DATA_ENV_VAR}"
    else:
        directory, origin = None, None

    if directory is not None:
        missing = _missing_files(directory)
        if missing:
            raise MNISTNotFoundError(_named_dir_message(directory, origin, missing))
        return _load_directory(directory)

    cache = mnist_cache_dir()
    missing = _missing_files(cache)
    mirror_errors: list[str] = []
    if missing and download:
        mirror_errors = _download(cache, missing, progress)
        missing = _missing_files(cache)
    if missing:
        raise MNISTNotFoundError(_cache_message(cache, missing, download, mirror_errors))
    try:
        return _load_directory(cache)
    except MNISTError as err:
        raise MNISTError(
            f"{err}\nThis file is in the download cache: delete it and call load_mnist again to fetch a fresh copy."
        ) from err


def mnist_cache_dir() -> Path:
    """The download cache: ``$XDG_CACHE_HOME/convgrad/mnist``, else ``~/.cache/convgrad/mnist``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "convgrad" / "mnist"


def normalize(
    images: np.ndarray, mean: float | None = None, std: float | None = None
) -> tuple[np.ndarray, float, float]:
    """Scale uint8 pixels to [0, 1], then standardize them with one scalar mean and std.

    ``x = images / 255``; ``out = (x - mean) / std``. ``mean`` and ``std`` are scalars in the
    [0, 1] scale and default to the statistics of ``images`` itself over all its pixels:
    normalize the training images first, then pass the returned ``mean`` and ``std`` when
    normalizing the test images, so both are standardized with the training statistics
    (for MNIST about 0.1307 and 0.3081).

    Args:
      images: uint8 pixels, any shape, e.g. ``(N, 28, 28)``.
      mean: mean of ``images / 255`` to subtract; ``None`` computes it from ``images``.
      std: standard deviation of ``images / 255`` to divide by; ``None`` computes it from ``images``.

    Returns:
      ``(out, mean, std)``: ``out`` float32 with the shape of ``images``; ``mean`` and
      ``std`` the floats that were used.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"normalize: images must be uint8 pixels 0..255, got dtype {images.dtype}")
    if mean is None or std is None:
        # Exact integer sums (a uint8 squared fits in uint16): var = (n·Σp² - (Σp)²) / (255 n)².
        n = images.size
        pixel_sum = int(images.sum(dtype=np.uint64))
        squares = images.astype(np.uint16)
        squares *= squares
        square_sum = int(squares.sum(dtype=np.uint64))
        mean = pixel_sum / (255 * n) if mean is None else mean
        std = math.sqrt(n * square_sum - pixel_sum**2) / (255 * n) if std is None else std
    if not std > 0:
        raise ValueError(f"normalize: std={std} must be positive (are all pixels equal?)")
    out = images.astype(np.float32)
    out /= np.float32(255.0)
    out -= np.float32(mean)
    out /= np.float32(std)
    return out, float(mean), float(std)


def prepare(mnist: MNIST) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training-ready arrays: pixels standardized with the TRAINING mean and std, labels as int32.

    Returns:
      ``(train_x, train_y, test_x, test_y)``: ``train_x (60000, 28, 28) float32``,
      ``train_y (60000,) int32``, ``test_x (10000, 28, 28) float32``, ``test_y (10000,) int32``.
      Models add the channel axis they need, e.g. ``x[..., None]`` for NHWC.
    """
    train_x, mean, std = normalize(mnist.train_images)
    test_x, _, _ = normalize(mnist.test_images, mean, std)
    return train_x, mnist.train_labels.astype(np.int32), test_x, mnist.test_labels.astype(np.int32)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Parse one IDX file, gzipped (recognised by its magic bytes 1f 8b) or raw.

    IDX layout: two zero bytes; a type code (0x08 ubyte, 0x09 byte, 0x0B short, 0x0C int,
    0x0D float, 0x0E double); the number of dimensions ``n``; ``n`` big-endian uint32 sizes;
    then exactly ``prod(sizes)`` big-endian items.

    Returns:
      An array of shape ``sizes`` in native byte order (uint8 arrays are read-only views).

    Raises:
      MNISTError: (a ValueError) naming ``path`` and what is wrong: bad gzip data, bad magic,
        unknown type code, truncated header or payload, trailing bytes.
    """
    path = Path(path)
    _, content = _read_file(path, str(path))
    return _parse_idx(content, str(path))


# ---------------------------------------------------------------- private steps of load_mnist


def _find_file(directory: Path, name: str) -> Path | None:
    """``directory/NAME.gz`` if it exists, else ``directory/NAME``, else None."""
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    return None


def _missing_files(directory: Path) -> list[str]:
    return [name for name in FILE_NAMES if _find_file(directory, name) is None]


def _load_directory(directory: Path) -> MNIST:
    arrays = {}
    for name in FILE_NAMES:
        path = _find_file(directory, name)
        file_bytes, content = _read_file(path, str(path))
        arrays[name] = _parse_idx(content, str(path))
        _check_layout(arrays[name], name, str(path))
        _check_digest(name, file_bytes, content, str(path))
    return MNIST(
        train_images=arrays["train-images-idx3-ubyte"],
        train_labels=arrays["train-labels-idx1-ubyte"],
        test_images=arrays["t10k-images-idx3-ubyte"],
        test_labels=arrays["t10k-labels-idx1-ubyte"],
        source=directory,
    )


def _read_file(path: Path, where: str) -> tuple[bytes, bytes]:
    """The file's bytes and its content: gunzipped if it starts with the gzip magic, else the same bytes."""
    file_bytes = path.read_bytes()
    if file_bytes[:2] != _GZIP_MAGIC:
        return file_bytes, file_bytes
    try:
        return file_bytes, gzip.decompress(file_bytes)
    except (OSError, EOFError, zlib.error) as err:
        raise MNISTError(f"{where}: corrupt gzip data ({err})") from err


def _parse_idx(content: bytes, where: str) -> np.ndarray:
    if len(content) < 4:
        raise MNISTError(f"{where}: truncated: {len(content)} bytes, an IDX header needs at least 4")
    if content[0] or content[1]:
        raise MNISTError(f"{where}: bad magic: an IDX file starts with two zero bytes, found 0x{content[:2].hex()}")
    code, ndim = content[2], content[3]
    if code not in _IDX_TYPES:
        known = ", ".join(f"0x{c:02X} ({name})" for c, (name, _) in _IDX_TYPES.items())
        raise MNISTError(f"{where}: unknown IDX type code 0x{code:02X}; known codes are {known}")
    if ndim == 0:
        raise MNISTError(f"{where}: IDX header says 0 dimensions")
    header_bytes = 4 + 4 * ndim
    if len(content) < header_bytes:
        raise MNISTError(
            f"{where}: truncated header: {ndim} dimensions need {header_bytes} bytes, file holds {len(content)}"
        )
    shape = struct.unpack(f">{ndim}I", content[4:header_bytes])
    type_name, dtype = _IDX_TYPES[code]
    dtype = np.dtype(dtype)
    count = math.prod(shape)
    need, have = count * dtype.itemsize, len(content) - header_bytes
    if have != need:
        problem = "truncated" if have < need else "trailing bytes"
        raise MNISTError(
            f"{where}: {problem}: header says shape {shape} = {count} items of {type_name} ({need} bytes), "
            f"file holds {have} bytes"
        )
    array = np.frombuffer(content, dtype, count, offset=header_bytes).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _check_layout(array: np.ndarray, name: str, where: str) -> None:
    """The MNIST facts about one file: dtype, shape, split size, label range."""
    split, kind = _FILES[name]
    count = SPLIT_SIZES[split]
    expected = (count, *IMAGE_SHAPE) if kind == "images" else (count,)
    if array.dtype != np.uint8 or array.shape != expected:
        raise MNISTError(
            f"{where}: expected {kind} of shape {expected} uint8 for the {split} split, "
            f"found shape {array.shape} {array.dtype}"
        )
    if kind == "labels" and array.size and array.max() >= NUM_CLASSES:
        index = int(np.argmax(array >= NUM_CLASSES))
        raise MNISTError(f"{where}: label {array[index]} at index {index} is outside 0..{NUM_CLASSES - 1}")


def _check_digest(name: str, file_bytes: bytes, content: bytes, where: str) -> None:
    """Accept the original .gz by its MD5, any copy by the SHA-256 of its decompressed content."""
    is_gzip = file_bytes[:2] == _GZIP_MAGIC
    if is_gzip and hashlib.md5(file_bytes).hexdigest() == GZ_MD5[name]:
        return
    actual = hashlib.sha256(content).hexdigest()
    if actual == SHA256[name]:
        return
    message = f"{where}: checksum mismatch for {name}: expected SHA-256 {SHA256[name]}, got {actual}"
    if is_gzip:
        message += f" (and the .gz file's MD5 is {hashlib.md5(file_bytes).hexdigest()}, not {GZ_MD5[name]})"
    raise MNISTError(message)


def _download(directory: Path, names: list[str], progress: bool) -> list[str]:
    """Fetch each file from the first mirror that serves it with the right checksum; return the errors.

    Stops at the first file no mirror could serve (offline: no point waiting on the rest).
    """
    directory.mkdir(parents=True, exist_ok=True)
    errors = []
    for name in names:
        for mirror in MIRRORS:
            url = f"{mirror}{name}.gz"
            try:
                _fetch(url, directory, name, progress)
                break
            except (OSError, HTTPException, MNISTError) as err:
                errors.append(f"{url}: {err}")
        else:
            return errors
    return errors


def _fetch(url: str, directory: Path, name: str, progress: bool) -> None:
    """Stream ``url`` into a temporary file in ``directory``, verify it, then move it into place atomically."""
    fd, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".part")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as out, _urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with Progress(total, f"{name}.gz", unit="B", enabled=progress) as bar:
                while chunk := response.read(_CHUNK_BYTES):
                    out.write(chunk)
                    bar.update(len(chunk))
        file_bytes, content = _read_file(temp, url)
        _check_digest(name, file_bytes, content, url)
        os.replace(temp, directory / (f"{name}.gz" if file_bytes[:2] == _GZIP_MAGIC else name))
    finally:
        temp.unlink(missing_ok=True)


def _named_dir_message(directory: Path, origin: str, missing: list[str]) -> str:
    state = "" if directory.is_dir() else " (the directory does not exist)"
    return (
        f"MNIST files missing from {directory}{state}, given by {origin}:\n"
        + "".join(f"  {name}.gz (or {name})\n" for name in missing)
        + f"A directory named by data_dir or ${DATA_ENV_VAR} is searched alone: load_mnist neither downloads "
        f"into it nor falls back to the cache. Put the files there, or drop --data-dir / unset "
        f"${DATA_ENV_VAR} to use the cache {mnist_cache_dir()}, which is filled by downloading."
    )


def _cache_message(cache: Path, missing: list[str], download: bool, mirror_errors: list[str]) -> str:
    if not download:
        tried = "Download: not attempted (download=False).\n"
    else:
        tried = "Download: every mirror failed:\n" + "".join(f"  {error}\n" for error in mirror_errors)
    return (
        "MNIST not found. load_mnist needs these four files, each gzipped (NAME.gz) or raw (NAME):\n"
        + "".join(f"  {name}.gz\n" for name in FILE_NAMES)
        + "Searched:\n"
        "  data_dir argument: not given\n"
        f"  ${DATA_ENV_VAR}: not set\n"
        f"  cache {cache}: missing {', '.join(missing)}\n"
        + tried
        + f"Fix: put the four files in one directory and pass --data-dir DIR (load_mnist(data_dir=DIR) in Python) "
        f"or set {DATA_ENV_VAR}=DIR; or copy them into {cache}."
    )

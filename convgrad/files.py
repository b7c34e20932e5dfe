"""Files: atomic writes with normal permissions, and the checks of a path before any work is done.

An atomic write puts the data in a temporary file beside the target, flushes it to disk
and renames it over the target, so a reader (or a run resumed after a crash) sees the old
file or the new one, never half of one. The new file gets the permissions any other
program's new file would get, ``0o666`` less the umask (``tempfile.mkstemp`` would give
``0o600``), and an error names the target, not the temporary file.

The checks (:func:`output_directory_problem`, :func:`output_file_problem`,
:func:`input_directory_problem`) say, before a long run starts, why a path given for its
results could not be written at its end: what is missing, what is a file where a
directory is meant (or the reverse), what is not writable. Writability is probed by
creating (and removing) a file, not guessed from the mode bits, which do not bind root and
do not show a read-only mount.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import secrets
from collections.abc import Callable
from pathlib import Path

# For fault tests only (tests/fault_run.py): called with the temporary file's path once the
# first half of the data is written and flushed, so that a test can pause a write there and
# kill the process in the middle of it. None in normal use.
_halfway_hook: Callable[[Path], None] | None = None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it over ``path``.

    The parent directories are created if missing. The file is created with mode
    ``0o666`` masked by the umask, like any new file. On failure the temporary file
    is removed and the ``OSError`` is re-raised with ``path`` as its file name.

    Raises:
      OSError: the directory cannot be created or written, the disk is full, ...;
        its ``filename`` is ``path``.
    """
    path = Path(path)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = _create_beside(path)
        with os.fdopen(handle, "wb") as stream:
            view, half = memoryview(data), len(data) // 2
            stream.write(view[:half])
            if _halfway_hook is not None:
                stream.flush()
                _halfway_hook(temporary)
            stream.write(view[half:])
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
        _sync_directory(path.parent)
    except OSError as error:
        if temporary is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        if error.errno is None:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error
    except BaseException:
        if temporary is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def remove_leftovers(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that interrupted atomic writes of ``path`` left beside it; the ones removed.

    Only for a file that one process alone writes (a checkpoint): another writer's
    temporary file would be removed under it.
    """
    path = Path(path)
    removed = []
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            removed.append(leftover)
    return removed


def _create_beside(path: Path) -> tuple[int, Path]:
    """A new, empty ``.NAME.<random>.tmp`` in the directory of ``path``, opened for writing, mode 0o666 & ~umask."""
    for _ in range(100):
        temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temporary
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path))


def _sync_directory(directory: Path) -> None:
    """Flush the directory entry of a rename to disk (POSIX; a no-op where directories cannot be opened)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


# ---------------------------------------------------------------------------- checks before the work


def output_directory_problem(path: str | os.PathLike) -> str | None:
    """Why files could not be written into directory ``path`` (created if missing), or None if they could.

    ``path`` may exist as a writable directory, or not exist below a writable
    directory (it is then created when first written).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        return "is a file, not a directory"
    return _creatable_problem(path)


def output_file_problem(path: str | os.PathLike) -> str | None:
    """Why a file could not be written (atomically) at ``path``, or None if it could.

    ``path`` must not be a directory, and its directory must be writable or creatable.
    """
    path = Path(path)
    if path.is_dir():
        return "is a directory, not a file"
    if path.exists() and not path.is_file():
        return "is not a regular file"
    problem = _creatable_problem(path.parent)
    return None if problem is None else f"its directory {path.parent} {problem}"


def input_directory_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a directory of input files, or None if it can."""
    path = Path(path)
    if not path.exists():
        return "does not exist"
    if not path.is_dir():
        return "is a file, not a directory"
    if not os.access(path, os.R_OK | os.X_OK):
        return "is not readable"
    return None


def _creatable_problem(directory: Path) -> str | None:
    """Why files could not be created in ``directory`` (made with its parents if missing), or None."""
    existing = directory
    while not existing.exists():
        if existing.parent == existing:
            return "cannot be created"
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot be created: {existing} is a file"
    problem = _probe_write(existing)
    if problem is None:
        return None
    return f"is not writable ({problem})" if existing == directory else f"cannot be created in {existing} ({problem})"


def _probe_write(directory: Path) -> str | None:
    """Create and remove a file in ``directory``; the error's description if that fails."""
    try:
        handle, probe = _create_beside(directory / ".convgrad-write-check")
    except OSError as error:
        return error.strerror or str(error)
    os.close(handle)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return None

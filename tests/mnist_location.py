"""Where the tests find real MNIST: ``$CONVGRAD_DATA`` or the shared dataset beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
MNIST_MISSING = f"real MNIST not found in $CONVGRAD_DATA or {SHARED_MNIST}"


def mnist_dir() -> Path | None:
    """``$CONVGRAD_DATA`` or the shared dataset beside the checkout, whichever holds all four MNIST files."""
    from convgrad import data

    candidates = [Path(os.environ[data.DATA_ENV_VAR])] if os.environ.get(data.DATA_ENV_VAR) else []
    for directory in [*candidates, SHARED_MNIST]:
        if all((directory / f"{n}.gz").is_file() or (directory / n).is_file() for n in data.FILE_NAMES):
            return directory
    return None

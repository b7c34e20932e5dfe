"""A minimal text progress bar on stderr (no dependency), shared by verify, train, bench and downloads."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``with Progress(total, "verify") as bar: bar.update(1, note="conv")``.

    Redraws one line in place on a terminal; when the stream is not a terminal
    (CI logs, pipes) it prints a line only at 25 % steps, so logs stay short.
    ``enabled=False`` makes every method a no-op.
    """

    def __init__(
        self, total: int | None, label: str, *, stream: TextIO | None = None, enabled: bool = True, unit: str = ""
    ):
        self.total, self.label, self.unit = total, label, unit
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.count = 0
        self.note = ""
        self.start = time.perf_counter()
        self._interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_quarter = -1

    def __enter__(self) -> Progress:
        self._draw()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def update(self, n: int = 1, note: str | None = None) -> None:
        self.count += n
        if note is not None:
            self.note = note
        self._draw()

    def close(self) -> None:
        if self.enabled and self._interactive:
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        if self.total:
            fraction = min(self.count / self.total, 1.0)
            filled = int(fraction * 24)
            bar = "#" * filled + "-" * (24 - filled)
            head = f"{self.label} [{bar}] {self.count}/{self.total}"
        else:
            fraction, head = 0.0, f"{self.label} {self.count}"
        line = f"{head} {self.unit}{' ' if self.unit else ''}{rate:.1f}/s {elapsed:.1f}s {self.note}".rstrip()
        if self._interactive:
            self.stream.write("\r" + line[:160].ljust(80))
            self.stream.flush()
        elif self.total:
            quarter = int(fraction * 4)
            if quarter > self._last_quarter:
                self._last_quarter = quarter
                self.stream.write(line + "\n")
                self.stream.flush()

"""The progress bars of verify, train, bench and downloads: tqdm, with one set of settings.

``with Progress(total, "verify", unit="cases") as bar: bar.update(1, note="conv")`` draws a
tqdm bar on stderr. On a terminal it is redrawn in place, and left on screen when it
closes; a bar that counts every step reaches its total. When the stream is not a terminal
(CI logs, pipes, files) nothing is redrawn: one plain line, tqdm's text of the bar, is
written at 0 %, 25 %, 50 %, 75 % and 100 %, so logs stay short.
"""

from __future__ import annotations

import math
import sys
from typing import TextIO

from tqdm import tqdm


class _Discard:
    """Where tqdm draws when the bar is written as log lines instead (:class:`Progress` writes those)."""

    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


class Progress:
    """A tqdm bar: ``total`` items (None: unknown), labelled ``label``, counted in ``unit``.

    ``update(n, note)`` adds ``n`` items and shows ``note`` after the bar;
    ``enabled=False`` draws nothing. ``stream`` (default: stderr) is drawn on in
    place if it is a terminal, else gets a line per quarter of ``total``.
    ``unit="B"`` counts bytes, shown as KiB and MiB.
    """

    def __init__(
        self, total: int | None, label: str, *, stream: TextIO | None = None, enabled: bool = True, unit: str = ""
    ):
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self._terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_quarter = -1
        byte_count = unit == "B"
        self.bar = tqdm(
            total=total,
            desc=label,
            unit=unit or "it",
            unit_scale=byte_count,
            unit_divisor=1024 if byte_count else 1000,
            file=self.stream if self._terminal else _Discard(),
            disable=not enabled,
            leave=True,
            dynamic_ncols=self._terminal,
            mininterval=0.1 if self._terminal else math.inf,
        )
        self._log_line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def update(self, n: int = 1, note: str | None = None) -> None:
        """Count ``n`` more items; ``note`` (if given) replaces the text after the bar."""
        if not self.enabled:
            return
        if note is not None:
            self.bar.set_postfix_str(note, refresh=False)
        self.bar.update(n)
        self._log_line()

    def close(self) -> None:
        self.bar.close()

    def _log_line(self) -> None:
        """Off a terminal: the bar's text as one line, the first time each quarter of the total is reached."""
        if not self.enabled or self._terminal or not self.bar.total:
            return
        quarter = min(4, 4 * self.bar.n // self.bar.total)
        if quarter > self._last_quarter:
            self._last_quarter = quarter
            self.stream.write(self.bar.format_meter(**self.bar.format_dict) + "\n")
            self.stream.flush()

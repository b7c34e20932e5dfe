"""The progress bars (tqdm): they reach their totals; off a terminal they write a line per quarter, or nothing."""

from __future__ import annotations

import io
import re
import sys

import pytest

from convgrad import data, train
from convgrad.progress import Progress


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def last_drawn(text: str, label: str) -> str:
    """The last state drawn of the bar ``label``: bars are redrawn after a carriage return."""
    return [frame for frame in re.split(r"[\r\n]", text) if frame.startswith(label)][-1]


def test_a_training_bar_reaches_its_total(monkeypatch):
    """43 steps, a note every 43 // 20 = 2 steps: the bar must still end at 43/43 (it ended at 42/43)."""
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    config = train.TrainConfig(model="linear", epochs=2, batch_size=2)
    train.train(config, train.synthetic_dataset(86, 8), progress=True)
    for epoch in (1, 2):
        frame = last_drawn(terminal.getvalue(), f"epoch {epoch}/2")
        assert " 43/43 " in frame and "100%" in frame and "loss " in frame


def test_off_a_terminal_a_bar_writes_a_line_per_quarter():
    log = io.StringIO()
    with Progress(43, "verify", stream=log, unit="cases") as bar:
        for _ in range(43):
            bar.update(1, note="conv")
    lines = log.getvalue().splitlines()
    assert [re.search(r"(\d+)/43", line).group(1) for line in lines] == ["0", "11", "22", "33", "43"]
    assert "\r" not in log.getvalue()


@pytest.mark.parametrize("stream", [Terminal, io.StringIO])
def test_a_disabled_bar_writes_nothing(stream):
    out = stream()
    with Progress(10, "bench", stream=out, enabled=False) as bar:
        bar.update(10)
    assert out.getvalue() == ""


def test_a_download_bar_counts_bytes_to_the_total(monkeypatch, tmp_path):
    payload = bytes(300_000)

    def respond(url, timeout=None):
        response = io.BytesIO(payload)
        response.headers = {"Content-Length": str(len(payload))}
        return response

    monkeypatch.setattr(data, "_urlopen", respond)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with pytest.raises(data.MNISTError):  # not MNIST: the checksum fails after the download
        data._fetch("https://example.invalid/x.gz", tmp_path, "train-labels-idx1-ubyte", progress=True)
    frame = last_drawn(terminal.getvalue(), "train-labels-idx1-ubyte.gz")
    assert "100%" in frame and "293k/293k" in frame

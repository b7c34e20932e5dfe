"""A training run killed with SIGKILL, during an epoch or during a checkpoint write, resumes to the very end state.

Each run is a fresh process (``tests/fault_run.py``): the linear model, or a narrow resnet
with batch-norm state and a random image shift in every step, 3 epochs of 10 steps on
synthetic data, a checkpoint each epoch. The killed run pauses at a known point
(half-way through epoch 2, or with half of epoch 2's checkpoint written to its temporary
file), says so through a marker file, and is killed there with SIGKILL: no handler, no
clean-up, as a crash or the OOM killer would. The resumed run must end with the
parameters, the optimizer state, the model state (the resnet's running statistics) and
the losses of a run that was never interrupted, bit for bit (the same program on the
same CPU is deterministic; nothing is compared within a tolerance).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from convgrad import train

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "tests" / "fault_run.py")


def _environment() -> dict[str, str]:
    env = dict(os.environ)  # with the test suite's XLA_FLAGS: every run compiles the same program
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _run(directory: Path, out: Path, *options: str) -> dict[str, np.ndarray]:
    done = subprocess.run(
        [sys.executable, SCRIPT, str(directory), str(out), *options],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out) as saved:
        return {key: saved[key] for key in saved.files}


def _kill_when_paused(directory: Path, tmp_path: Path, *options: str) -> None:
    """Start a run with a pause option, wait until it has paused, SIGKILL it."""
    marker = tmp_path / "paused"
    run = subprocess.Popen(
        [sys.executable, SCRIPT, str(directory), str(tmp_path / "never.npz"), *options, "--marker", str(marker)],
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert run.poll() is None, f"the run ended before pausing:\n{run.stdout.read()[-3000:]}"
            assert time.monotonic() < deadline, "the run did not pause within 300 s"
            time.sleep(0.05)
        run.send_signal(signal.SIGKILL)
        assert run.wait(timeout=60) == -signal.SIGKILL
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        run.stdout.close()


@pytest.fixture(scope="module", params=["linear", "resnet"])
def model(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def uninterrupted(model, tmp_path_factory) -> dict[str, np.ndarray]:
    directory = tmp_path_factory.mktemp(f"uninterrupted-{model}")
    return _run(directory / "ckpt", directory / "out.npz", "--model", model)


def _assert_bit_identical(resumed: dict[str, np.ndarray], uninterrupted: dict[str, np.ndarray]) -> None:
    assert resumed.keys() == uninterrupted.keys() and any(k.startswith("state.params") for k in resumed)
    for key in uninterrupted:
        np.testing.assert_array_equal(resumed[key], uninterrupted[key], err_msg=key)
        assert resumed[key].dtype == uninterrupted[key].dtype


def test_killed_during_an_epoch_resumes_to_the_uninterrupted_end(tmp_path, model, uninterrupted):
    directory = tmp_path / "ckpt"
    _kill_when_paused(directory, tmp_path, "--model", model, "--pause-in-epoch", "2")
    _, state, meta = train.load_checkpoint(directory / train.CHECKPOINT)
    assert meta["epochs_done"] == 1  # the kill came after epoch 1's checkpoint, before epoch 2's
    assert bool(state["model_state"]) == (model == "resnet")  # the resnet's running statistics are in it
    resumed = _run(directory, tmp_path / "resumed.npz", "--model", model, "--resume")
    _assert_bit_identical(resumed, uninterrupted)


def test_killed_during_a_checkpoint_write_resumes_to_the_uninterrupted_end(tmp_path, model, uninterrupted):
    directory = tmp_path / "ckpt"
    _kill_when_paused(directory, tmp_path, "--model", model, "--pause-in-write", "2")
    temporaries = [p for p in directory.iterdir() if p.name != train.CHECKPOINT]
    assert len(temporaries) == 1 and temporaries[0].name.startswith(f".{train.CHECKPOINT}.")  # the half-written one
    assert 0 < temporaries[0].stat().st_size < (directory / train.CHECKPOINT).stat().st_size
    _, _, meta = train.load_checkpoint(directory / train.CHECKPOINT)
    assert meta["epochs_done"] == 1  # epoch 1's checkpoint is intact: the rename never happened
    resumed = _run(directory, tmp_path / "resumed.npz", "--model", model, "--resume")
    _assert_bit_identical(resumed, uninterrupted)
    assert [p.name for p in directory.iterdir()] == [train.CHECKPOINT]  # the leftover is cleared by the next write

"""The command line: `convgrad verify` prints a table, writes JSON, and exits non-zero on a failure."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from convgrad import cli
from convgrad.ops import conv_textbook


def test_verify_quick_passes_and_writes_json(tmp_path, capsys):
    report = tmp_path / "report.json"
    status = cli.main(["verify", "--quick", "--ops", "conv", "--device", "cpu", "--json", str(report), "--no-progress"])
    out = capsys.readouterr().out
    assert status == 0
    assert "vs autodiff" in out and "adjoint" in out and "pass" in out
    data = json.loads(report.read_text())
    assert data["passed"] is True
    assert [row["op"] for row in data["summary"]] == ["conv"]
    assert data["summary"][0]["cases"] == 2
    assert all(case["passed"] for case in data["cases"])


def test_verify_fails_on_a_broken_vjp(mutate, capsys):
    mutate(conv_textbook, "conv_bias_grad", lambda g, geometry: jnp.mean(g, axis=(0, 2, 3)))
    status = cli.main(["verify", "--quick", "--ops", "conv", "--no-progress"])
    out = capsys.readouterr().out
    assert status == 1
    assert "FAIL" in out and "argument 2 (b)" in out


def test_unknown_op_is_a_clear_error():
    with pytest.raises(SystemExit, match=r"unknown op.*nope"):
        cli.main(["verify", "--ops", "nope"])


def test_missing_device_is_a_clear_error():
    if jax.devices("cpu") and jax.default_backend() == "tpu":
        pytest.skip("this machine has a TPU")
    with pytest.raises(SystemExit, match="--device tpu: JAX sees no tpu device"):
        cli.main(["verify", "--quick", "--device", "tpu", "--no-progress"])


def test_module_entry_point():
    done = subprocess.run(
        [sys.executable, "-m", "convgrad", "verify", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert "--quick" in done.stdout and "--json" in done.stdout

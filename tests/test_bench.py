"""The benchmark harness: interleaved timing, ratios, report, CLI; and the train step's peak memory."""

from __future__ import annotations

import json

import pytest

from convgrad import bench, cli


def test_time_variants_interleaves_rounds():
    calls = []
    variants = {"a": (lambda: calls.append("a"), ()), "b": (lambda: calls.append("b"), ())}
    times = bench.time_variants(variants, rounds=3, warmup=1)
    assert calls == ["a", "b"] + ["a", "b"] * 3  # warm-up, then a, b alternate round after round
    assert {name: len(samples) for name, samples in times.items()} == {"a": 3, "b": 3}


def test_ratios_compare_like_with_like():
    medians = {"convgrad fwd": 1.0, "jax.grad fwd": 3.0, "convgrad vjp": 2.0, "jax.grad vjp": 1.0, "pytorch vjp": 4.0}
    assert bench._ratios(medians) == {
        "jax.grad fwd / convgrad fwd": 3.0,
        "jax.grad vjp / convgrad vjp": 0.5,
        "pytorch vjp / convgrad vjp": 2.0,
    }


def test_select_by_words():
    assert all("max_pool" in name for name in bench.select(["max_pool"]))
    assert bench.select(None) == list(bench.BENCHMARKS)
    with pytest.raises(ValueError, match="no benchmark matches"):
        bench.select(["nonexistent"])


def test_cli_bench_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert cli.main(["bench", "--ops", "relu", "--rounds", "2", "--json", str(path), "--no-progress"]) == 0
    report = json.loads(path.read_text())
    (result,) = report["results"]
    assert {"convgrad vjp", "jax.grad vjp", "convgrad fwd", "jax.grad fwd"} <= set(result["median_ms"])
    assert "jax.grad vjp / convgrad vjp" in result["ratios"] and report["machine"]["jax"]
    assert "relu" in capsys.readouterr().out


def test_convgrad_step_needs_no_more_memory_than_autodiff():
    """Peak memory of the compiled MNIST convnet train step (XLA's analysis): convgrad's <= jax.grad's."""
    memory = bench.step_memory()
    ours = memory["convgrad step"]["peak_bytes"]
    assert ours <= memory["jax.grad step (NHWC)"]["peak_bytes"]
    assert ours <= memory["jax.grad step (NCHW)"]["peak_bytes"]

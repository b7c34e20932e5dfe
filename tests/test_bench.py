"""The benchmark harness: interleaved timing, ratios, report, CLI; and the train step's peak memory."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import pytest

from convgrad import bench, cli


def test_time_variants_interleaves_shuffled_rounds():
    calls = []
    variants = {name: (lambda name=name: calls.append(name), ()) for name in "abc"}
    times = bench.time_variants(variants, rounds=6, warmup=1, batch_seconds=0.0)
    timed = calls[6:]  # after one warm-up and one batch-sizing call per variant
    rounds = [timed[i : i + 3] for i in range(0, len(timed), 3)]
    assert len(rounds) == 6 and all(sorted(r) == ["a", "b", "c"] for r in rounds)  # each round times every variant
    assert len({tuple(r) for r in rounds}) > 1  # in an order that changes from round to round
    assert {name: len(samples) for name, samples in times.items()} == {"a": 6, "b": 6, "c": 6}


def test_time_variants_batches_fast_calls():
    calls = []
    bench.time_variants({"a": (lambda: calls.append(1), ())}, rounds=2, warmup=0, batch_seconds=0.001)
    assert len(calls) > 2 + 1  # a call of microseconds is repeated to fill each ~1 ms sample


def test_ratios_compare_like_with_like():
    medians = {"convgrad fwd": 1.0, "jax.grad fwd": 3.0, "convgrad vjp": 2.0, "jax.grad vjp": 1.0, "pytorch vjp": 4.0}
    assert bench._ratios(medians) == {
        "jax.grad fwd / convgrad fwd": 3.0,
        "jax.grad vjp / convgrad vjp": 0.5,
        "pytorch vjp / convgrad vjp": 2.0,
    }


def test_ratios_compare_a_layout_with_convgrad_and_like_with_like():
    """The default layout's step against convgrad's channels-last step, and jax.grad's against it in that layout."""
    medians = {"convgrad step": 2.0, "convgrad step (NCHW)": 3.0}
    medians.update({"jax.grad step (NHWC)": 4.0, "jax.grad step (NCHW)": 6.0})
    assert bench._ratios(medians) == {
        "jax.grad step (NHWC) / convgrad step": 2.0,
        "jax.grad step (NCHW) / convgrad step": 3.0,
        "convgrad step (NCHW) / convgrad step": 1.5,
        "jax.grad step (NCHW) / convgrad step (NCHW)": 2.0,
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


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_every_benchmark_builds_its_arrays_in_the_chosen_dtype(dtype):
    """``--dtype``: each benchmark's floating arrays (the step's parameters and images too) are in it."""
    for name, benchmark in bench.BENCHMARKS.items():
        for variant, (_, args) in benchmark.make(dtype).items():
            if variant.startswith("pytorch"):
                continue
            leaves = [a for a in jax.tree.leaves(args) if hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating)]
            assert leaves and {jnp.dtype(a.dtype).name for a in leaves} == {dtype}, (name, variant)


def test_cli_bench_dtype(tmp_path, capsys):
    path = tmp_path / "bench.json"
    argv = ["bench", "--ops", "relu", "--rounds", "1", "--dtype", "bfloat16", "--json", str(path), "--no-progress"]
    assert cli.main(argv) == 0
    assert json.loads(path.read_text())["dtype"] == "bfloat16"
    assert cli.main(["bench", "--ops", "relu", "--dtype", "int8", "--no-progress"]) == 2
    assert "bench: --dtype must be one of float32, bfloat16, float16, got 'int8'" in capsys.readouterr().err


def test_convgrad_step_needs_no_more_memory_than_autodiff():
    """Peak memory of the compiled MNIST convnet train step (XLA's analysis): convgrad's <= jax.grad's."""
    memory = bench.step_memory()
    for layout in ("convgrad step", "convgrad step (NCHW)"):
        ours = memory[layout]["peak_bytes"]
        assert ours <= memory["jax.grad step (NHWC)"]["peak_bytes"], layout
        assert ours <= memory["jax.grad step (NCHW)"]["peak_bytes"], layout

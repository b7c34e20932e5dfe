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


def test_flop_counts_by_direct_count():
    """Written out: 2 FLOPs (a multiply, an add) per kernel tap, input channel and output element."""
    assert bench.conv_flops(128, 14, 32, 64, 3) == 2 * 128 * 14 * 14 * 64 * 32 * 3 * 3 == 924_844_032
    assert bench.dense_flops(128, 3136, 256) == 2 * 128 * 3136 * 256 == 205_520_896
    layer = bench.BENCHMARKS["conv 64->128 3x3 stride 2, 56x56, batch 32"]
    assert layer.flops == {"fwd": 2 * 32 * 28 * 28 * 128 * 64 * 9, "vjp": 3 * 2 * 32 * 28 * 28 * 128 * 64 * 9}
    # the step: conv 1 (no input gradient: the images), conv 2, dense 1 and 2 (three products each)
    conv1, conv2 = 2 * 128 * 28 * 28 * 32 * 9, 2 * 128 * 14 * 14 * 64 * 32 * 9
    dense1, dense2 = 2 * 128 * 3136 * 256, 2 * 128 * 256 * 10
    assert bench.step_flops(128) == 2 * conv1 + 3 * (conv2 + dense1 + dense2)
    assert not bench.BENCHMARKS["relu, 128x28x28x32"].flops  # memory-bound: no GFLOP/s quoted


def test_cli_bench_reports_gflops_against_the_gemm_peak(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert cli.main(["bench", "--ops", "dense", "--rounds", "1", "--json", str(path), "--no-progress"]) == 0
    report = json.loads(path.read_text())
    gemm = report["gemm"]
    assert gemm["shape"] == [bench.GEMM_SIZE] * 3 and "xla gemm" in gemm["gflops"]
    assert gemm["peak_gflops"] == max(gemm["gflops"].values()) > 0
    (result,) = report["results"]
    for variant in ("convgrad fwd", "convgrad vjp", "jax.grad vjp"):
        seconds = result["median_ms"][variant] / 1e3
        assert result["gflops"][variant] == pytest.approx(result["flops"][variant.split()[1]] / seconds / 1e9)
        assert result["gemm_peak_fraction"][variant] == pytest.approx(result["gflops"][variant] / gemm["peak_gflops"])
    out = capsys.readouterr().out
    assert "GEMM peak" in out and "GFLOP/s" in out and "% of GEMM peak" in out
    assert cli.main(["bench", "--ops", "relu", "--rounds", "1", "--json", str(path), "--no-progress"]) == 0
    assert "gemm" not in json.loads(path.read_text())  # nothing counted, nothing to set against


def _result(name, group, medians):
    spread = dict.fromkeys(medians, 0.0)
    return {
        "name": name,
        "group": group,
        "description": "",
        "median_ms": medians,
        "spread": spread,
        "ratios": {},
        "same_program": [],
    }


def test_goals_are_judged_on_the_runs_own_medians_against_pytorchs_faster_layout():
    """Hand-made medians, every goal's ratio worked out by hand: each kind of goal missed once, and met once
    (the layout goal in the next test)."""
    step = {"convgrad step": 10.0, "convgrad step (NCHW)": 11.5}
    step.update({"pytorch step (channels_last)": 13.0, "pytorch step (contiguous)": 20.0})
    conv_nhwc = {"convgrad fwd": 1.5, "convgrad vjp": 7.0, "pytorch fwd": 2.0, "pytorch vjp": 6.0}
    conv_nchw = {"convgrad fwd": 2.5, "convgrad vjp": 4.0, "pytorch fwd": 3.0, "pytorch vjp": 5.0}
    report = {
        "results": [
            _result("step", "step", step),
            _result("conv a", "op", conv_nhwc),
            _result("conv a, NCHW", "op", conv_nchw),
            _result("max_pool b", "op", {"convgrad fwd": 9.0, "pytorch fwd": 1.0}),  # not a conv: no goal
        ],
        "step_memory": {
            "convgrad step": {"peak_bytes": 100, "temp_bytes": 0},
            "jax.grad step (NHWC)": {"peak_bytes": 200, "temp_bytes": 0},
            "convgrad step (NCHW)": {"peak_bytes": 300, "temp_bytes": 0},
            "jax.grad step (NCHW)": {"peak_bytes": 200, "temp_bytes": 0},
        },
    }
    judged = {entry["goal"]: (entry["value"], entry["met"]) for entry in bench.goals(report)}
    assert judged == {
        "step: convgrad step (NCHW) / convgrad step": (pytest.approx(1.15), False),  # > 1.1
        "step: pytorch step (channels_last) / convgrad step": (pytest.approx(1.3), True),
        "step: pytorch step (channels_last) / convgrad step (NCHW)": (pytest.approx(13 / 11.5), False),  # < 1.2
        # PyTorch's faster layout per product: forward 2.0 (channels-last row), VJP 5.0 (NCHW row)
        "conv a: best pytorch fwd / convgrad fwd": (pytest.approx(2 / 1.5), True),
        "conv a, NCHW: best pytorch fwd / convgrad fwd": (pytest.approx(0.8), False),
        "conv a: best pytorch vjp / convgrad vjp": (pytest.approx(5 / 7), False),
        "conv a, NCHW: best pytorch vjp / convgrad vjp": (pytest.approx(1.25), True),
        "peak memory: convgrad step / jax.grad step (NHWC)": (pytest.approx(0.5), True),
        "peak memory: convgrad step (NCHW) / jax.grad step (NCHW)": (pytest.approx(1.5), False),
    }
    report["goals"] = bench.goals(report)
    report["machine"] = {"processor": "cpu", "cpus": 2, "jax": jax.__version__}
    table = bench.format_table(report)
    assert "goals (docs/performance.md): 4 of 9 met in this run" in table
    assert "MISSED conv a, NCHW: best pytorch fwd / convgrad fwd" in table


def test_goals_without_pytorch_judge_the_layout_and_the_memory_only():
    step = {"convgrad step": 10.0, "convgrad step (NCHW)": 10.5, "jax.grad step (NHWC)": 30.0}
    conv = {"convgrad fwd": 1.0, "jax.grad fwd": 2.0}
    report = {"results": [_result("step", "step", step), _result("conv a", "op", conv)]}
    assert [(e["goal"], e["met"]) for e in bench.goals(report)] == [
        ("step: convgrad step (NCHW) / convgrad step", True)
    ]

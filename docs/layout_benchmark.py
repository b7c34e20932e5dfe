"""convgrad in its default layout (NCHW) against channels-last (NHWC): interleaved in one process, as ratios.

    PYTHONPATH=. python docs/layout_benchmark.py ops [ROUNDS]          # per op, NCHW / NHWC
    PYTHONPATH=. python docs/layout_benchmark.py threshold [ROUNDS]    # max_pool 2x2 NCHW: native vs channels-last

``ops`` times the MNIST convnet's layers with the public ops' default arguments
(channel-first) and channels-last, on the same values. ``threshold`` times the
channel-first 2x2 max pool's forward and VJP (3.2M input elements, batch chosen per
channel count) computed channel-first and channels-last inside (by
``pooling.CHANNELS_LAST_MIN_CHANNELS``), which sets that threshold. The step in both
layouts is ``convgrad bench --ops step`` (``convgrad step (NCHW) / convgrad step``).
Timing: :func:`convgrad.bench.time_variants` (warm-up, batches of calls, shuffled rounds).
"""

from __future__ import annotations

import statistics
import sys

import jax

import convgrad
from convgrad.bench import _normal, _vjp_program, time_variants
from convgrad.ops import pooling

CHANNELS_LAST = ("NHWC", "HWIO", "NHWC")


def ops_variants() -> dict:
    variants = {}
    for c, o, s in ((1, 32, 28), (32, 64, 14)):
        x, w = _normal(0, (128, s, s, c)), _normal(1, (3, 3, c, o), (2 / (9 * c)) ** 0.5)
        g = _normal(2, (128, s, s, o))
        xf, wf, gf = x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), g.transpose(0, 3, 1, 2)
        first = lambda x, w: convgrad.conv(x, w, padding="SAME")
        last = lambda x, w: convgrad.conv(x, w, padding="SAME", dimension_numbers=CHANNELS_LAST)
        variants[f"conv {c}->{o} {s}x{s} fwd NCHW"] = (jax.jit(first), (xf, wf))
        variants[f"conv {c}->{o} {s}x{s} fwd NHWC"] = (jax.jit(last), (x, w))
        variants[f"conv {c}->{o} {s}x{s} vjp NCHW"] = (_vjp_program(first, (0, 1)), ((xf, wf), gf))
        variants[f"conv {c}->{o} {s}x{s} vjp NHWC"] = (_vjp_program(last, (0, 1)), ((x, w), g))
    for c, s in ((32, 28), (64, 14)):
        x, g = _normal(0, (128, s, s, c)), _normal(1, (128, s // 2, s // 2, c))
        first = lambda x: convgrad.max_pool(x, 2)[0]
        last = lambda x: convgrad.max_pool(x, 2, channel_axis=-1)[0]
        xf, gf = x.transpose(0, 3, 1, 2), g.transpose(0, 3, 1, 2)
        variants[f"max_pool 2x2 {s}x{s}x{c} fwd NCHW"] = (jax.jit(first), (xf,))
        variants[f"max_pool 2x2 {s}x{s}x{c} fwd NHWC"] = (jax.jit(last), (x,))
        variants[f"max_pool 2x2 {s}x{s}x{c} vjp NCHW"] = (_vjp_program(first, (0,)), ((xf,), gf))
        variants[f"max_pool 2x2 {s}x{s}x{c} vjp NHWC"] = (_vjp_program(last, (0,)), ((x,), g))
    return variants


def threshold_variants() -> dict:
    variants = {}
    for c in (1, 2, 4, 8, 16, 32, 64):
        x = _normal(0, (max(1, 128 * 32 // c), c, 28, 28))
        g = _normal(1, (x.shape[0], c, 14, 14))
        for name, threshold in (("NCHW", 10**9), ("NHWC", 1)):  # computed channel-first, or channels-last inside
            pooling.CHANNELS_LAST_MIN_CHANNELS = threshold
            f = lambda x: convgrad.max_pool(x, 2)[0]  # a new function per variant: jit caches traces by function
            for kind, (fn, args) in {"fwd": (jax.jit(f), (x,)), "vjp": (_vjp_program(f, (0,)), ((x,), g))}.items():
                jax.block_until_ready(fn(*args))  # traced now, under this threshold
                variants[f"max_pool 2x2 C={c} N={x.shape[0]} {kind} {name}"] = (fn, args)
    return variants


def main() -> None:
    section = sys.argv[1] if len(sys.argv) > 1 else "ops"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    variants = {"ops": ops_variants, "threshold": threshold_variants}[section]()
    times = time_variants(variants, rounds=rounds)
    medians = {name: statistics.median(samples) * 1e3 for name, samples in times.items()}
    inside = " (channels-last inside)" if section == "threshold" else ""
    print(f"{section}: medians of {rounds} interleaved rounds, jax {jax.__version__}\n")
    print(f"| variant | NCHW | NHWC{inside} | NCHW / NHWC |\n| --- | ---: | ---: | ---: |")
    for name, median in medians.items():
        if name.endswith(" NCHW"):
            other = medians[name[: -len("NCHW")] + "NHWC"]
            print(f"| {name[:-5]} | {median:.2f} ms | {other:.2f} ms | {median / other:.2f} |")


if __name__ == "__main__":
    main()

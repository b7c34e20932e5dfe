"""The measurements behind docs/performance.md's "Convolutions" section.

    PYTHONPATH=. python docs/conv_formulations.py

Times, with convgrad.bench's interleaved method, (1) this machine's memory and GEMM
throughput, (2) how close XLA's convolutions on the 64->64 3x3 56x56 layer come to that
GEMM throughput, (3) alternative formulations of conv 32->64 3x3 on 14x14 (batch 128,
channels-last) against XLA's convolution, and (4) convgrad's im2col forward and weight
gradient against its textbook ones (XLA's convolutions) for 1 to 64 input channels,
(5) Winograd F(2x2, 3x3) against the textbook products by layer, (6) the polyphase input
gradient of strided layers against XLA's zero-inserted one, and (7) F(4x4, 3x3) against
F(2x2, 3x3) (forward, with each one's float32 error). Every formulation is checked
against XLA's result before it is timed. Prints markdown tables. Name sections to run only those:

    PYTHONPATH=. python docs/conv_formulations.py machine_throughput conv_throughput
"""

from __future__ import annotations

import statistics
import sys
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from convgrad.bench import time_variants
from convgrad.testing import TOLERANCES

NHWC = ("NHWC", "HWIO", "NHWC")
RTOL = TOLERANCES["float32"].rtol  # formulations differ only in float32 summation order
TAPS = [(i, j) for i in range(3) for j in range(3)]


def normal(seed, shape, scale=1.0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape) * scale, jnp.float32)


def medians(variants, rounds=21):
    return {name: statistics.median(samples) * 1e3 for name, samples in time_variants(variants, rounds).items()}


def conv(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC)


def machine_throughput():
    a = normal(0, (32, 262144))  # 32 MiB
    cols, w = normal(1, (25088, 288)), normal(2, (288, 64))
    square = normal(3, (2048, 2048))
    times = medians(
        {
            "a + 1 (32 MiB)": (jax.jit(lambda a: a + 1), (a,)),
            "GEMM": (jax.jit(jnp.matmul), (cols, w)),
            "square GEMM": (jax.jit(jnp.matmul), (square, square)),
        }
    )
    print("| measurement | time | throughput |\n| --- | ---: | ---: |")
    print(
        f"| `a + 1` over 32 MiB | {times['a + 1 (32 MiB)']:.2f} ms | {64 / 1.024 / times['a + 1 (32 MiB)']:.1f} GB/s |"
    )
    gflops = 2 * 25088 * 288 * 64 / times["GEMM"] / 1e6
    print(f"| (25088 x 288) @ (288 x 64) float32 GEMM | {times['GEMM']:.2f} ms | {gflops:.0f} GFLOP/s |")
    gflops = 2 * 2048**3 / times["square GEMM"] / 1e6
    print(f"| (2048 x 2048) @ (2048 x 2048) float32 GEMM | {times['square GEMM']:.2f} ms | {gflops:.0f} GFLOP/s |\n")


def conv_throughput(n=32, size=56, c=64, o=64):
    """XLA's products of the 64->64 3x3 layer in GFLOP/s; a GEMM of the same FLOPs; and shifted-row GEMMs.

    The GEMM is given its im2col patches for free: it bounds what any patch formulation
    could reach. The shifted-row formulation needs no patches: with the input padded and
    flattened to rows ``(n * (H + 2) * (W + 2), C)``, tap ``(i, j)`` reads one contiguous
    block of rows starting at ``i * (W + 2) + j``, and the cotangent, padded with zero rows
    and columns to the same grid, zeroes the positions that wrap around a row's end.
    """
    x, w, g = normal(0, (n, size, size, c)), normal(1, (3, 3, c, o)), normal(2, (n, size, size, o))
    flops = 2 * n * size * size * c * o * 9
    positions = n * size * size
    cols, w_mat = normal(3, (positions, 9 * c)), normal(4, (9 * c, o))
    side = size + 2
    rows = n * side * side

    def padded_rows(x):
        flat = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))).reshape(rows, c)
        return jnp.pad(flat, ((0, 2 * side + 2), (0, 0)))  # room for the last tap's block

    def forward_shifted(x, w):
        xr = padded_rows(x)
        y = sum(xr[i * side + j : i * side + j + rows] @ w[i, j] for i, j in TAPS)
        return y.reshape(n, side, side, o)[:, :size, :size]

    def weight_shifted(x, g):
        xr = padded_rows(x)
        gr = jnp.pad(g, ((0, 0), (0, 2), (0, 2), (0, 0))).reshape(rows, o)
        return jnp.stack([xr[i * side + j : i * side + j + rows].T @ gr for i, j in TAPS]).reshape(3, 3, c, o)

    xla_forward = jax.jit(conv)
    xla_weight = jax.jit(lambda x, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0])
    for shifted, xla, args in ((forward_shifted, xla_forward, (x, w)), (weight_shifted, xla_weight, (x, g))):
        expected = xla(*args)
        error = float(jnp.max(jnp.abs(jax.jit(shifted)(*args) - expected)) / jnp.max(jnp.abs(expected)))
        assert error < RTOL, (shifted.__name__, error)
    products = {
        "XLA forward": (xla_forward, (x, w)),
        "XLA weight gradient": (xla_weight, (x, g)),
        "XLA input gradient": (jax.jit(lambda g, w: jax.vjp(lambda x: conv(x, w), x)[1](g)[0]), (g, w)),
        "one GEMM, patches given": (jax.jit(jnp.matmul), (cols, w_mat)),
        "shifted-row GEMMs, forward": (jax.jit(forward_shifted), (x, w)),
        "shifted-row GEMMs, weight gradient": (jax.jit(weight_shifted), (x, g)),
    }
    times = medians(products)
    print(f"conv {c}->{o} 3x3 on {size}x{size}, batch {n}, NHWC ({flops / 1e9:.2f} GFLOP per product):\n")
    print("| product | time | throughput |\n| --- | ---: | ---: |")
    for name, t in times.items():
        print(f"| {name} | {t:.1f} ms | {flops / t / 1e6:.0f} GFLOP/s |")
    print()


def formulations(n=128, size=14, c=32, o=64):
    x, w, g = normal(0, (n, size, size, c)), normal(1, (3, 3, c, o)), normal(2, (n, size, size, o))
    positions = n * size * size

    def padded(a):
        return jnp.pad(a, ((0, 0), (1, 1), (1, 1), (0, 0)))

    def forward_one_gemm(x, w):
        cols = jnp.concatenate([padded(x)[:, i : i + size, j : j + size] for i, j in TAPS], -1)
        return (cols.reshape(positions, 9 * c) @ w.reshape(9 * c, o)).reshape(n, size, size, o)

    def forward_per_tap(x, w):
        xp = padded(x)
        return sum(xp[:, i : i + size, j : j + size].reshape(positions, c) @ w[i, j] for i, j in TAPS).reshape(g.shape)

    def rows(a):  # the 3 horizontal taps as channels: (N, H + 2, W, 3C)
        ap = padded(a)
        return jnp.concatenate([ap[:, :, j : j + size] for j in range(3)], -1)

    def forward_rows(x, w):
        xw = rows(x)
        return sum(xw[:, i : i + size].reshape(positions, 3 * c) @ w[i].reshape(3 * c, o) for i in range(3)).reshape(
            g.shape
        )

    def weight_one_gemm(x, g):
        cols = jnp.concatenate([padded(x)[:, i : i + size, j : j + size] for i, j in TAPS], -1)
        return (g.reshape(positions, o).T @ cols.reshape(positions, 9 * c)).T.reshape(3, 3, c, o)

    def weight_per_tap(x, g):
        xp, g_t = padded(x), g.reshape(positions, o).T
        return jnp.stack([(g_t @ xp[:, i : i + size, j : j + size].reshape(positions, c)).T for i, j in TAPS]).reshape(
            3, 3, c, o
        )

    def weight_rows(x, g):
        xw, g_t = rows(x), g.reshape(positions, o).T
        return jnp.stack([(g_t @ xw[:, i : i + size].reshape(positions, 3 * c)).T.reshape(3, c, o) for i in range(3)])

    def input_rows(g, w):
        w_t = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
        gw = rows(g)
        return sum(gw[:, i : i + size].reshape(positions, 3 * o) @ w_t[i].reshape(3 * o, c) for i in range(3)).reshape(
            x.shape
        )

    xla = {
        "forward": jax.jit(conv),
        "weight gradient": jax.jit(lambda x, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0]),
        "input gradient": jax.jit(lambda g, w: jax.vjp(lambda x: conv(x, w), x)[1](g)[0]),
    }
    args = {"forward": (x, w), "weight gradient": (x, g), "input gradient": (g, w)}
    table = {
        "XLA convolution": xla,
        "one GEMM over 9 concatenated patch copies": {"forward": forward_one_gemm, "weight gradient": weight_one_gemm},
        "9 per-tap GEMMs over strided slices": {"forward": forward_per_tap, "weight gradient": weight_per_tap},
        "3 row-grouped GEMMs over 3 shifted copies": {
            "forward": forward_rows,
            "weight gradient": weight_rows,
            "input gradient": input_rows,
        },
    }
    variants = {}
    for name, by_kind in table.items():
        for kind, fn in by_kind.items():
            fn = jax.jit(fn)
            expected = xla[kind](*args[kind])
            error = float(jnp.max(jnp.abs(fn(*args[kind]) - expected)) / jnp.max(jnp.abs(expected)))
            assert error < RTOL, (name, kind, error)
            variants[(name, kind)] = (fn, args[kind])
    times = medians({f"{name} | {kind}": v for (name, kind), v in variants.items()})
    print(f"conv {c}->{o} 3x3 on {size}x{size}, batch {n}, NHWC:\n")
    print("| formulation | forward | weight gradient | input gradient |\n| --- | ---: | ---: | ---: |")
    for name, by_kind in table.items():
        cells = [f"{times[f'{name} | {k}']:.1f} ms" if k in by_kind else "" for k in args]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()


def im2col_crossover():
    """convgrad's two formulations of the forward and the weight gradient, by input channels (3x3, SAME, NHWC)."""
    from convgrad.ops import conv_im2col, conv_textbook
    from convgrad.ops.geometry import ConvGeometry

    print(
        "| input channels, size, batch | textbook forward | im2col forward | textbook weight gradient "
        "| im2col weight gradient |\n| --- | ---: | ---: | ---: | ---: |"
    )
    for n, size, c, o in [
        (128, 28, 1, 32),
        (128, 28, 3, 32),
        (32, 56, 3, 64),
        (128, 28, 4, 32),
        (128, 28, 8, 32),
        (128, 28, 16, 32),
        (128, 14, 32, 64),
        (32, 56, 64, 64),
    ]:
        x, g = normal(0, (n, size, size, c)), normal(1, (n, size, size, o))
        w, b = normal(2, (3, 3, c, o)), normal(3, (o,))
        dn = lax.conv_dimension_numbers(x.shape, w.shape, NHWC)
        geometry = ConvGeometry((1, 1), ((1, 1), (1, 1)), (1, 1), 1, dn)
        forward_args, weight_args = (x, w, b), (x, g)
        variants = {
            "textbook forward": (jax.jit(partial(conv_textbook.conv_forward, geometry=geometry)), forward_args),
            "im2col forward": (jax.jit(partial(conv_im2col.conv_forward_im2col, geometry=geometry)), forward_args),
            "textbook weight gradient": (
                jax.jit(partial(conv_textbook.conv_weight_grad, geometry=geometry, kernel_spatial=(3, 3))),
                weight_args,
            ),
            "im2col weight gradient": (
                jax.jit(partial(conv_im2col.conv_weight_grad_im2col, geometry=geometry, kernel_spatial=(3, 3))),
                weight_args,
            ),
        }
        for kind in ("forward", "weight gradient"):
            expected = variants[f"textbook {kind}"][0](*variants[f"textbook {kind}"][1])
            got = variants[f"im2col {kind}"][0](*variants[f"im2col {kind}"][1])
            error = float(jnp.max(jnp.abs(got - expected)) / jnp.max(jnp.abs(expected)))
            assert error < RTOL, (c, kind, error)
        times = medians(variants)
        print(f"| {c} ({size}x{size}, batch {n}) | " + " | ".join(f"{times[k]:.1f} ms" for k in variants) + " |")
    print()


def winograd_crossover():
    """Winograd F(2x2, 3x3) against the textbook (XLA) convolutions, per product, by layer (3x3, SAME, NHWC)."""
    from convgrad.ops import conv_textbook
    from convgrad.ops import conv_winograd as winograd
    from convgrad.ops.geometry import ConvGeometry

    products = {
        "forward": (conv_textbook.conv_forward, winograd.conv_forward_winograd, "forward"),
        "input gradient": (conv_textbook.conv_input_grad, winograd.conv_input_grad_winograd, "input"),
        "weight gradient": (conv_textbook.conv_weight_grad, winograd.conv_weight_grad_winograd, "weight"),
    }
    print("| layer | " + " | ".join(f"{p}: textbook, winograd" for p in products) + " |\n| --- | ---: | ---: | ---: |")
    for n, size, c, o in [
        (128, 28, 8, 32),
        (128, 28, 16, 32),
        (128, 28, 32, 32),
        (128, 14, 32, 64),
        (128, 7, 64, 64),
        (32, 56, 64, 64),
        (32, 28, 128, 128),
        (32, 14, 256, 256),
    ]:
        x, g = normal(0, (n, size, size, c)), normal(1, (n, size, size, o))
        w, b = normal(2, (3, 3, c, o), 1 / np.sqrt(9 * c)), normal(3, (o,))
        dn = lax.conv_dimension_numbers(x.shape, w.shape, NHWC)
        geometry = ConvGeometry((1, 1), ((1, 1), (1, 1)), (1, 1), 1, dn)
        arguments = {"forward": (x, w, b), "input": (g, w), "weight": (x, g)}
        statics = {"forward": {}, "input": {"in_spatial": (size, size)}, "weight": {"kernel_spatial": (3, 3)}}
        variants = {}
        for product, (textbook, fast, kind) in products.items():
            for name, fn in (("textbook", textbook), ("winograd", fast)):
                variants[f"{product} {name}"] = (
                    jax.jit(partial(fn, geometry=geometry, **statics[kind])),
                    arguments[kind],
                )
            expected = variants[f"{product} textbook"][0](*arguments[kind])
            got = variants[f"{product} winograd"][0](*arguments[kind])
            error = float(jnp.max(jnp.abs(got - expected)) / jnp.max(jnp.abs(expected)))
            assert error < RTOL, (c, product, error)
        times = medians(variants, rounds=11)
        cells = [f"{times[f'{p} textbook']:.1f}, {times[f'{p} winograd']:.1f} ms" for p in products]
        print(f"| {c}->{o}, {size}x{size}, batch {n} | " + " | ".join(cells) + " |", flush=True)
    print()


def polyphase_crossover():
    """The polyphase input gradient against the textbook one (XLA's zero-inserted convolution), by strided layer."""
    from convgrad.ops import conv_polyphase, conv_textbook
    from convgrad.ops.geometry import CHANNELS_FIRST, ConvGeometry

    print("| layer | textbook input gradient | polyphase input gradient |\n| --- | ---: | ---: |")
    for n, size, c, o, k, s, layout in [
        (128, 28, 1, 32, 3, 2, NHWC),
        (128, 28, 16, 32, 3, 2, NHWC),
        (128, 28, 32, 64, 3, 2, NHWC),
        (32, 56, 64, 128, 3, 2, NHWC),
        (32, 56, 64, 128, 3, 2, CHANNELS_FIRST[2]),
        (32, 56, 64, 128, 1, 2, NHWC),
        (32, 28, 128, 256, 3, 2, NHWC),
        (32, 14, 256, 512, 3, 2, NHWC),
        (32, 28, 64, 128, 3, 2, NHWC),
        (32, 56, 32, 32, 3, 2, NHWC),
        (8, 112, 64, 64, 3, 2, NHWC),
        (8, 112, 64, 64, 3, 3, NHWC),
        (32, 56, 64, 64, 5, 2, NHWC),
    ]:
        pad = (k - 1) // 2
        out = (size + 2 * pad - k) // s + 1
        last = layout == NHWC
        g = normal(1, (n, out, out, o) if last else (n, o, out, out))
        w = normal(2, (k, k, c, o) if last else (o, c, k, k), 1 / np.sqrt(k * k * c))
        dn = lax.conv_dimension_numbers((n, size, size, c) if last else (n, c, size, size), w.shape, layout)
        geometry = ConvGeometry((s, s), ((pad, pad),) * 2, (1, 1), 1, dn)
        variants = {
            name: (jax.jit(partial(fn, geometry=geometry, in_spatial=(size, size))), (g, w))
            for name, fn in (
                ("textbook", conv_textbook.conv_input_grad),
                ("polyphase", conv_polyphase.conv_input_grad_polyphase),
            )
        }
        expected, got = (variants[name][0](g, w) for name in ("textbook", "polyphase"))
        error = float(jnp.max(jnp.abs(got - expected)) / jnp.max(jnp.abs(expected)))
        assert error < RTOL, (c, o, k, s, error)
        times = medians(variants, rounds=11)
        name = f"{c}->{o} {k}x{k} stride {s}, {size}x{size}, batch {n}" + ("" if last else ", NCHW")
        print(f"| {name} | {times['textbook']:.1f} ms | {times['polyphase']:.1f} ms |", flush=True)
    print()


# F(4x4, 3x3) (Lavin & Gray, 2015): 6x6 tiles at the points 0, +-1, +-2 and infinity.
F4_B_T = np.array(
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ]
)
F4_G = np.array(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ]
)
F4_A_T = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]])


def _winograd_f4(x, w, transforms):
    """SAME 3x3 correlation of (N, H, W, C) by F(4x4, 3x3) over convgrad's batch chunks (16 MiB of tiles each).

    ``transforms="adds"``: the tile transforms as sums of strided slices, as convgrad's F(2x2, 3x3) computes
    them (:func:`convgrad.ops.conv_winograd._combine`); ``"dots"``: as small matrix products over stacked tiles.
    """
    from convgrad.ops.batch_chunks import in_batch_order, map_batch_chunks
    from convgrad.ops.conv_winograd import _combine

    m, a = 4, 6
    size, out_channels = x.shape[1], w.shape[-1]
    t = -(-size // m)
    u = jnp.einsum("ia,jb,abco->ijco", F4_G, F4_G, w, precision=lax.Precision.HIGHEST)  # (6, 6, C, O)

    def chunk(xc):
        n = xc.shape[0]
        xp = jnp.pad(xc, ((0, 0), (1, 1 + m * t - size), (1, 1 + m * t - size), (0, 0)))
        if transforms == "adds":
            d = [[xp[:, i : i + m * t : m, j : j + m * t : m] for j in range(a)] for i in range(a)]
            columns = [_combine(F4_B_T, [d[i][j] for i in range(a)]) for j in range(a)]
            v = [_combine(F4_B_T, [columns[j][i] for j in range(a)]) for i in range(a)]
            prod = [[jnp.matmul(v[i][j], u[i, j], precision=lax.Precision.HIGHEST) for j in range(a)] for i in range(a)]
            columns = [_combine(F4_A_T, [prod[i][j] for i in range(a)]) for j in range(a)]
            y = [_combine(F4_A_T, [columns[j][r] for j in range(a)]) for r in range(m)]  # y[r][q]: (n, t, t, O)
            return jnp.stack([jnp.stack(row, axis=3) for row in y], axis=2).reshape(n, m * t, m * t, out_channels)
        bt, at = jnp.asarray(F4_B_T, x.dtype), jnp.asarray(F4_A_T, x.dtype)
        rows = jnp.einsum("ia,anhwc->inhwc", bt, jnp.stack([xp[:, i : i + m * t : m] for i in range(a)]))
        tiles = jnp.stack([rows[:, :, :, j : j + m * t : m] for j in range(a)], 1)  # (6, 6, n, t, t, C)
        v = jnp.einsum("jb,ibnhwc->ijnhwc", bt, tiles)
        prod = jnp.einsum("ijnhwc,ijco->ijnhwo", v, u, precision=lax.Precision.HIGHEST)
        y = jnp.einsum("rj,nhqwjo->nhqwro", at, jnp.einsum("qi,ijnhwo->nhqwjo", at, prod))
        return y.reshape(n, m * t, m * t, out_channels)

    per_image = a * a * t * t * (x.shape[-1] + out_channels) * 4
    y = in_batch_order(map_batch_chunks(chunk, x, 16 * 2**20 // per_image), x.shape[0])
    return y[:, :size, :size]


def winograd_tile_size():
    """F(4x4, 3x3) against convgrad's F(2x2, 3x3) and XLA, forward only (3x3, SAME, NHWC), with each one's error."""
    from convgrad.ops import conv_winograd as winograd
    from convgrad.ops.geometry import ConvGeometry

    d, g = np.random.default_rng(0).standard_normal(6), np.random.default_rng(1).standard_normal(3)
    one_d = F4_A_T @ ((F4_G @ g) * (F4_B_T @ d)) - np.array([d[i : i + 3] @ g for i in range(4)])
    assert np.max(np.abs(one_d)) < 1e-14, one_d  # the constants are F(4, 3)'s: exact in float64 up to rounding
    names = ("XLA", "F(2x2) adds (convgrad)", "F(4x4) adds", "F(4x4) dots")
    print("| layer | " + " | ".join(names) + " |\n| --- |" + " ---: |" * len(names))
    errors = []
    for n, size, c, o in [(128, 14, 32, 64), (128, 28, 32, 32), (32, 56, 64, 64), (32, 28, 128, 128)]:
        x, w = normal(0, (n, size, size, c)), normal(2, (3, 3, c, o), 1 / np.sqrt(9 * c))
        geometry = ConvGeometry((1, 1), ((1, 1), (1, 1)), (1, 1), 1, lax.conv_dimension_numbers(x.shape, w.shape, NHWC))
        fns = dict(
            zip(
                names,
                (
                    conv,
                    partial(winograd.conv_forward_winograd, b=None, geometry=geometry),
                    partial(_winograd_f4, transforms="adds"),
                    partial(_winograd_f4, transforms="dots"),
                ),
            )
        )
        variants = {name: (jax.jit(fn), (x, w)) for name, fn in fns.items()}
        with jax.enable_x64(True):
            exact = np.asarray(conv(x.astype(jnp.float64), w.astype(jnp.float64)))
        for name, (fn, args) in variants.items():
            # relative to the largest |y|; a wrong transform errs by O(1), float32 rounding by 1e-7 to 1e-5
            error = float(np.max(np.abs(np.asarray(fn(*args), np.float64) - exact)) / np.max(np.abs(exact)))
            assert error < 1e-3, (name, error)
            errors.append(f"{c}->{o} {size}x{size} {name}: {error:.1e}")
        times = medians(variants, rounds=11)
        cells = [f"{times[name]:.1f} ms" for name in names]
        print(f"| {c}->{o}, {size}x{size}, batch {n} | " + " | ".join(cells) + " |", flush=True)
    print("\nlargest error relative to the largest |y| (float32 vs a float64 convolution):")
    print("\n".join(errors) + "\n")


if __name__ == "__main__":
    sections = {
        f.__name__: f
        for f in (
            machine_throughput,
            conv_throughput,
            formulations,
            im2col_crossover,
            winograd_crossover,
            polyphase_crossover,
            winograd_tile_size,
        )
    }
    unknown = set(sys.argv[1:]) - set(sections)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; choose from {list(sections)}")
    print(f"jax {jax.__version__}, {jax.devices()[0]}\n")
    for name in sys.argv[1:] or sections:
        sections[name]()

"""convgrad.lax against jax.lax on JAX's own convolution test grids, forward and VJP.

The grids are those of JAX's ``tests/lax_test.py`` (commit cec06d1 of jax-ml/jax): ``testConv``,
``testConvWithGeneralPadding``, ``testConvGeneralDilated0D``, ``testConvGeneralDilated``,
``testConvTranspose2DT``, ``testConvTranspose2D``, ``testConvTranspose1D`` and
``testConvTranspose0D``, each rebuilt as the full product of its parameters (shapes, dtypes,
strides, paddings, dilations, group counts, layouts) and subsampled deterministically (a seeded
choice, :data:`SAMPLES` cases per grid; ``CONVGRAD_HYPOTHESIS=thorough`` takes 4 times as many).
JAX's own runs sample these products too (``jtu.sample_product``). Each case compares
convgrad's output and its VJP, in the case's dtype, with ``jax.lax``'s and ``jax.vjp`` of it in
float64 on the same rounded inputs, to the dtype's tolerance (:data:`convgrad.testing.TOLERANCES`).
"""

from __future__ import annotations

import itertools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import convgrad.lax as clax
from convgrad import testing

FLOAT_DTYPES = ["bfloat16", "float16", "float32", "float64"]  # lax_test_util.float_dtypes
SCALE = 4 if os.environ.get("CONVGRAD_HYPOTHESIS") == "thorough" else 1
SAMPLES = {
    "testConv": 6,
    "testConvWithGeneralPadding": 8,
    "testConvGeneralDilated0D": 6,
    "testConvGeneralDilated": 16,
    "testConvTranspose2DT": 8,
    "testConvTranspose2D": 8,
    "testConvTranspose1D": 6,
    "testConvTranspose0D": 4,
}


def _conv():
    for b, i, j in itertools.product([2, 3], repeat=3):
        for dtype, strides, padding in itertools.product(
            FLOAT_DTYPES, [(1, 1), (1, 2), (2, 1)], ["VALID", "SAME", "SAME_LOWER"]
        ):
            yield (
                "conv_general_dilated",
                (b, i, 9, 10),
                (j, i, 4, 5),
                dtype,
                dict(window_strides=strides, padding=padding),
            )


def _general_padding():
    for b, i, j in itertools.product([1, 2, 3], repeat=3):
        for dtype, strides, padding, lhs_dilation, rhs_dilation in itertools.product(
            FLOAT_DTYPES,
            [(1, 1), (1, 2), (2, 1)],
            [((0, 0), (0, 0)), ((1, 2), (2, 0))],
            [(1, 1), (1, 2), (2, 2)],
            [(1, 1), (1, 2), (2, 2)],
        ):
            options = dict(
                window_strides=strides, padding=padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation
            )
            yield "conv_general_dilated", (b, i, 9, 10), (j, i, 4, 5), dtype, options


GROUPS = [(1, 1), (2, 1), (1, 2)]  # (batch_group_count, feature_group_count)


def _general_dilated_0d():
    for (bgc, fgc), (b, i, j), dtype in itertools.product(GROUPS, itertools.product([2, 3], repeat=3), FLOAT_DTYPES):
        options = dict(
            window_strides=(),
            padding=(),
            dimension_numbers=("NC", "OI", "NC"),
            feature_group_count=fgc,
            batch_group_count=bgc,
        )
        yield "conv_general_dilated", (b * bgc, i * fgc), (j * fgc * bgc, i), dtype, options


LAYOUTS = [  # (dimension_numbers, lhs permutation, rhs permutation) from canonical NCHW / OIHW shapes
    (("NCHW", "OIHW", "NCHW"), (0, 1, 2, 3), (0, 1, 2, 3)),
    (("NHWC", "HWIO", "NHWC"), (0, 2, 3, 1), (2, 3, 1, 0)),
    (("NCHW", "HWIO", "NHWC"), (0, 1, 2, 3), (2, 3, 1, 0)),
]


def _general_dilated():
    for (bgc, fgc), width, (b, i, j) in itertools.product(GROUPS, [0, 10], itertools.product([2, 3], repeat=3)):
        lhs = (b * bgc, i * fgc, 9, width)
        rhs = (j * fgc * bgc, i, 4, 5)
        for (dn, lhs_perm, rhs_perm), dtype, strides, padding, lhs_dilation, rhs_dilation in itertools.product(
            LAYOUTS,
            FLOAT_DTYPES,
            [(1, 1), (2, 1)],
            [((1, 2), (2, 0)), ((10, 8), (7, 13))],
            [(1, 1), (1, 2), (1, 4)],
            [(1, 1), (1, 2), (1, 4)],
        ):
            options = dict(
                window_strides=strides,
                padding=padding,
                lhs_dilation=lhs_dilation,
                rhs_dilation=rhs_dilation,
                dimension_numbers=dn,
                feature_group_count=fgc,
                batch_group_count=bgc,
            )
            yield (
                "conv_general_dilated",
                tuple(lhs[a] for a in lhs_perm),
                tuple(rhs[a] for a in rhs_perm),
                dtype,
                options,
            )


TRANSPOSE_PADDINGS = [*itertools.product(itertools.product([0, 1, 2], repeat=2), repeat=2), "VALID", "SAME"]


def _transpose_2d(transpose_kernel):
    for b, i, j, k in itertools.product([2, 3], [2, 3], [2, 3], [3, 4, 5]):
        rhs = (k, k, j, i) if transpose_kernel else (k, k, i, j)  # NB in lax_test: i, j flipped for transpose
        for dtype, strides, padding, rhs_dilation in itertools.product(
            FLOAT_DTYPES, [(1, 1), (1, 2), (2, 1), (2, 2), (3, 3)], TRANSPOSE_PADDINGS, [None, (2, 2)]
        ):
            options = dict(
                strides=strides,
                padding=padding,
                rhs_dilation=rhs_dilation,
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                transpose_kernel=transpose_kernel,
                use_consistent_padding=True,
            )
            yield "conv_transpose", (b, 9, 10, i), rhs, dtype, options


def _transpose_1d():
    for b, i, j, k in itertools.product([2, 3], [2, 3], [2, 3], [3, 4, 5]):
        for dtype, strides, padding, rhs_dilation in itertools.product(
            FLOAT_DTYPES, [(1,), (2,), (3,)], ["VALID", "SAME"], [None, (2,)]
        ):
            options = dict(
                strides=strides,
                padding=padding,
                dimension_numbers=("NHC", "HIO", "NHC"),
                rhs_dilation=rhs_dilation,
                transpose_kernel=False,
            )
            yield "conv_transpose", (b, 10, i), (k, i, j), dtype, options


def _transpose_0d():
    for b, i, j in itertools.product([2, 3], [2, 3], [2, 3]):
        for dtype, padding, rhs_dilation in itertools.product(FLOAT_DTYPES, ["VALID", "SAME"], [None, ()]):
            options = dict(
                strides=(),
                padding=padding,
                dimension_numbers=("NC", "IO", "NC"),
                rhs_dilation=rhs_dilation,
                transpose_kernel=False,
            )
            yield "conv_transpose", (b, i), (i, j), dtype, options


GRIDS = {
    "testConv": _conv,
    "testConvWithGeneralPadding": _general_padding,
    "testConvGeneralDilated0D": _general_dilated_0d,
    "testConvGeneralDilated": _general_dilated,
    "testConvTranspose2DT": lambda: _transpose_2d(True),
    "testConvTranspose2D": lambda: _transpose_2d(False),
    "testConvTranspose1D": _transpose_1d,
    "testConvTranspose0D": _transpose_0d,
}


def _subsample():
    """``(grid, index, case)`` for a seeded choice of each grid's cases, and the size of each full grid."""
    chosen, sizes = [], {}
    for seed, (name, grid) in enumerate(GRIDS.items()):
        cases = list(grid())
        sizes[name] = len(cases)
        count = min(len(cases), SAMPLES[name] * SCALE)
        picks = np.sort(np.random.default_rng(seed).choice(len(cases), count, replace=False))
        chosen.extend((name, int(p), cases[p]) for p in picks)
    return chosen, sizes


CASES, GRID_SIZES = _subsample()


def test_the_subsample_spans_each_grid():
    """The full grids hold these many cases (JAX's products); a seeded choice of SAMPLES per grid is checked."""
    assert GRID_SIZES == {
        "testConv": 288,
        "testConvWithGeneralPadding": 5832,
        "testConvGeneralDilated0D": 96,
        "testConvGeneralDilated": 20736,
        "testConvTranspose2DT": 79680,
        "testConvTranspose2D": 79680,
        "testConvTranspose1D": 1152,
        "testConvTranspose0D": 128,
    }
    assert len(CASES) == sum(min(GRID_SIZES[name], SAMPLES[name] * SCALE) for name in GRIDS)


@pytest.mark.parametrize(("grid", "index", "case"), CASES, ids=[f"{g}-{i}" for g, i, _ in CASES])
def test_matches_lax_forward_and_vjp(grid, index, case):
    op, lhs_shape, rhs_shape, dtype, options = case
    rng = np.random.default_rng(index)
    lhs = jnp.asarray(rng.standard_normal(lhs_shape), dtype)
    rhs = jnp.asarray(rng.standard_normal(rhs_shape), dtype)
    mine, theirs = getattr(clax, op), getattr(lax, op)
    y, vjp = jax.vjp(lambda lhs, rhs: mine(lhs, rhs, **options), lhs, rhs)
    wide = [jnp.asarray(np.asarray(a, np.float64)) for a in (lhs, rhs)]
    y_lax, vjp_lax = jax.vjp(lambda lhs, rhs: theirs(lhs, rhs, **options), *wide)
    assert y.shape == y_lax.shape and y.dtype == lhs.dtype
    testing.assert_close(y, y_lax, what=f"{grid}[{index}] forward vs lax")
    g = jnp.asarray(rng.standard_normal(y.shape), dtype)
    for name, got, want in zip(("lhs", "rhs"), vjp(g), vjp_lax(jnp.asarray(np.asarray(g, np.float64)))):
        assert got.shape == want.shape and got.dtype == lhs.dtype
        testing.assert_close(got, want, what=f"{grid}[{index}] {name} gradient vs jax.vjp of lax")

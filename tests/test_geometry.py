"""The shape formulas, each checked against a brute-force count or the 1-d gradient written from the definition."""

from __future__ import annotations

import jax
import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from jax import lax

from convgrad.ops import geometry

# pure Python: afford 40 times the profile's examples
cheap = settings(max_examples=40 * settings.default.max_examples)
sizes = st.integers(1, 12)
small = st.integers(1, 4)
pads = st.integers(0, 4)


@cheap
@given(sizes, small, small, small, pads, pads)
def test_conv_output_size_counts_windows(n_in, k, s, d, lo, hi):
    """Number of window starts 0, s, 2s, ... whose taps all land in the padded input (< 1 when none fits)."""
    padded = n_in + lo + hi
    count = sum(1 for start in range(0, padded, s) if start + (k - 1) * d < padded)
    size = geometry.conv_output_size(n_in, k, s, (lo, hi), d)
    assert size == count if count else size < 1


@cheap
@given(sizes, small, small, small)
def test_same_padding_matches_lax(n_in, k, s, d):
    (expected,) = lax.padtype_to_pads((n_in,), (geometry.dilated_size(k, d),), (s,), "SAME")
    assert geometry.same_padding(n_in, k, s, d) == tuple(expected)
    assert geometry.conv_output_size(n_in, k, s, expected, d) == -(-n_in // s)


def _problem(n_in, k, s, d, lo, hi, seed):
    rng = np.random.default_rng(seed)
    out = geometry.conv_output_size(n_in, k, s, (lo, hi), d)
    return rng.standard_normal(n_in), rng.standard_normal(k), rng.standard_normal(max(out, 1)), out


def _pad(a, lo, hi):
    """Zero-pad, or crop where a side is negative."""
    a = np.pad(a, (max(lo, 0), max(hi, 0)))
    return a[max(-lo, 0) : len(a) - max(-hi, 0)]


@cheap
@given(sizes, small, small, small, pads, pads, st.integers(0, 100))
def test_input_grad_padding(n_in, k, s, d, lo, hi, seed):
    """dx by scatter (definition) == correlation of the padded zero-inserted cotangent with the flipped kernel."""
    _, w, g, out = _problem(n_in, k, s, d, lo, hi, seed)
    assume(out >= 1)
    scatter = np.zeros(n_in + lo + hi)
    for i in range(out):
        for t in range(k):
            scatter[i * s + t * d] += g[i] * w[t]
    expected = scatter[lo : lo + n_in]

    zero_inserted = np.zeros(geometry.dilated_size(out, s))
    zero_inserted[::s] = g
    p_lo, p_hi = geometry.input_grad_padding(n_in, k, s, (lo, hi), d, out)
    padded = _pad(zero_inserted, p_lo, p_hi)
    flipped = w[::-1]
    assert len(padded) == n_in + (k - 1) * d
    got = np.array([sum(padded[j + t * d] * flipped[t] for t in range(k)) for j in range(n_in)])
    np.testing.assert_allclose(got, expected, atol=1e-12)


@cheap
@given(sizes, small, small, small, pads, pads, st.integers(0, 100))
def test_weight_grad_padding(n_in, k, s, d, lo, hi, seed):
    """dw by definition == correlation (window step d) of the re-padded input with the s-dilated cotangent."""
    x, _, g, out = _problem(n_in, k, s, d, lo, hi, seed)
    assume(out >= 1)
    x_pad = np.pad(x, (lo, hi))
    expected = np.array([sum(x_pad[i * s + t * d] * g[i] for i in range(out)) for t in range(k)])

    p_lo, p_hi = geometry.weight_grad_padding(n_in, k, s, (lo, hi), d, out)
    padded = _pad(x, p_lo, p_hi)
    span = geometry.dilated_size(out, s)
    assert (len(padded) - span) // d + 1 == k
    got = np.array([sum(padded[t * d + i * s] * g[i] for i in range(out)) for t in range(k)])
    np.testing.assert_allclose(got, expected, atol=1e-12)


@cheap
@given(sizes, small, small, small, st.integers(0, 3), st.integers(0, 3))
def test_conv_transpose_output_size_inverts_conv(n_in, k, s, d, p, output_padding):
    """A conv with the same k, s, p, d maps the transposed conv's output size back to its input size."""
    output_padding %= s
    n_out = geometry.conv_transpose_output_size(n_in, k, s, p, d, output_padding)
    assume(n_out >= 1)
    assert geometry.conv_output_size(n_out, k, s, (p, p), d) == n_in


@cheap
@given(sizes, small, small, small, st.integers(0, 3), st.integers(0, 3))
def test_conv_transpose_padding(n_in, k, s, d, p, output_padding):
    """With (p, p - output_padding) the transposed conv is exactly conv's input gradient, for any legal
    output_padding (< max(s, d), so also >= s when d > s): conv maps out back to exactly in samples, and the
    input-gradient padding is PyTorch's, d (k - 1) - p low and d (k - 1) - p + output_padding high."""
    output_padding %= max(s, d)
    n_out = geometry.conv_transpose_output_size(n_in, k, s, p, d, output_padding)
    assume(n_out >= 1)
    pair = geometry.conv_transpose_padding(p, output_padding)
    assert geometry.conv_output_size(n_out, k, s, pair, d) == n_in
    assert geometry.input_grad_padding(n_out, k, s, pair, d, n_in) == (
        d * (k - 1) - p,
        d * (k - 1) - p + output_padding,
    )
    assert geometry.weight_grad_padding(n_out, k, s, pair, d, n_in) == pair


@given(sizes, small, small, st.integers(0, 3), st.integers(0, 3), st.integers(0, 100))
def test_tap_grad_padding(n_in, k, s, lo, hi, seed):
    """Reading tap t of every window (x_pad[i s + t]) transposes to a zero-inserting pad with these edges."""
    out = geometry.conv_output_size(n_in, k, s, (lo, hi), 1)
    assume(out >= 1)
    g = np.random.default_rng(seed).standard_normal(out)
    for t in range(k):
        expected = np.zeros(n_in + lo + hi)
        for i in range(out):
            expected[i * s + t] += g[i]
        zero_inserted = np.zeros(geometry.dilated_size(out, s))
        zero_inserted[::s] = g
        got = _pad(zero_inserted, *geometry.tap_grad_padding(n_in, t, s, (lo, hi), out))
        np.testing.assert_array_equal(got, expected[lo : lo + n_in])


# ---------------------------------------------------------------------------- lax's arithmetic

signed = st.integers(-3, 4)


@cheap
@given(st.integers(0, 12), small, small, small, small, signed, signed)
def test_conv_general_output_size_counts_windows(n_in, k, s, d, a, lo, hi):
    """Windows of the dilated (a - 1 zeros between samples), padded (negative: cropped) input: lax's count,
    0 when none fits (never negative)."""
    assume(geometry.dilated_extent(n_in, a) + lo + hi >= 0)
    padded = geometry.dilated_extent(n_in, a) + lo + hi
    count = sum(1 for start in range(0, padded, s) if start + (k - 1) * d < padded)
    assert geometry.conv_general_output_size(n_in, k, s, (lo, hi), d, a) == count
    shape = jax.eval_shape(
        lambda x, w: lax.conv_general_dilated(x, w, (s,), [(lo, hi)], lhs_dilation=(a,), rhs_dilation=(d,)),
        jax.ShapeDtypeStruct((1, 1, n_in), np.float32),
        jax.ShapeDtypeStruct((1, 1, k), np.float32),
    ).shape
    assert shape[-1] == count


@cheap
@given(sizes, small, small, small)
def test_same_lower_padding_matches_lax(n_in, k, s, d):
    (expected,) = lax.padtype_to_pads((n_in,), (geometry.dilated_size(k, d),), (s,), "SAME_LOWER")
    assert geometry.same_lower_padding(n_in, k, s, d) == tuple(expected)


@cheap
@given(sizes, small, small, small, st.sampled_from(["SAME", "VALID", (0, 0), (1, 2), (2, 0)]))
def test_lax_conv_transpose_padding_is_lax_s(n_in, k, s, d, padding):
    """lax.conv_transpose(..., use_consistent_padding=True) is the s-dilated input padded by these pairs."""
    pads = geometry.lax_conv_transpose_padding(geometry.dilated_size(k, d), s, padding)
    assume(geometry.dilated_extent(n_in, s) + sum(pads) >= 0)  # else lax refuses both
    x, w = jax.ShapeDtypeStruct((1, n_in, 1), np.float32), jax.ShapeDtypeStruct((k, 1, 1), np.float32)
    spec = ("NHC", "HIO", "NHC")
    got = jax.eval_shape(
        lambda x, w: lax.conv_general_dilated(x, w, (1,), [pads], (s,), (d,), dimension_numbers=spec), x, w
    )
    transposed = lambda x, w: lax.conv_transpose(
        x, w, (s,), padding if isinstance(padding, str) else [padding], (d,), spec, use_consistent_padding=True
    )
    assert got.shape == jax.eval_shape(transposed, x, w).shape
    # and the values, with every sample and tap distinct
    xs, ws = np.arange(1.0, n_in + 1).reshape(1, n_in, 1), np.arange(1.0, k + 1).reshape(k, 1, 1)
    direct = lax.conv_general_dilated(xs, ws, (1,), [pads], (s,), (d,), dimension_numbers=spec)
    np.testing.assert_array_equal(direct, transposed(xs, ws))


@cheap
@given(sizes, small, small, small, st.integers(0, 3), st.integers(0, 3))
def test_conv_transpose_output_padding_inverts_the_output_size(n_in, k, s, d, p, output_padding):
    n_out = geometry.conv_transpose_output_size(n_in, k, s, p, d, output_padding)
    assert geometry.conv_transpose_output_padding(n_out, n_in, k, s, p, d) == output_padding


def test_dilated_extent_is_zero_for_no_samples():
    assert [geometry.dilated_extent(n, 3) for n in range(4)] == [0, 1, 4, 7]

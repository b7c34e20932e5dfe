"""The shape formulas, each checked against a brute-force count or the 1-d gradient written from the definition."""

from __future__ import annotations

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

"""experiments/checkerboard.py: its overlap counts are the hand-counted ones, and its facts hold.

Per axis, with an 8-sample output from 4 inputs (a 2x resize), counted by hand:

* ``conv_transpose(k=3, s=2, p=1, output_padding=1)``: input ``i`` pastes taps at
  ``2i - 1, 2i, 2i + 1``, so the full footprint ``[1, 1, 2, 1, 2, 1, 2, 1, 1]``
  cropped by one gives ``[1, 2, 1, 2, 1, 2, 1, 1]``: 1 and 2 alternating;
* ``conv_transpose(k=4, s=2, p=1)``: taps at ``2i - 1 .. 2i + 2``, ``[1, 2, 2, 2, 2, 2, 2, 1]``;
* ``upsample(2)`` then ``conv(k=3, p=1)``: every output reads 3 samples per axis, 2 at
  the zero-padded borders: ``[2, 3, 3, 3, 3, 3, 3, 2]``.

In 2-D each map is the outer product of its axis counts.
"""

from __future__ import annotations

import numpy as np
import pytest

from experiments import checkerboard

K3 = np.array([1, 2, 1, 2, 1, 2, 1, 1])
K4 = np.array([1, 2, 2, 2, 2, 2, 2, 1])
RESIZE_CONV = np.array([2, 3, 3, 3, 3, 3, 3, 2])


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("checkerboard")
    results = checkerboard.main(["--quick", "--out", str(out)])
    assert (out / "checkerboard.json").is_file() and (out / "checkerboard.png").stat().st_size > 0
    return results


@pytest.mark.parametrize(
    ("name", "axis_counts"),
    [
        ("conv_transpose_k3", K3),
        ("conv_transpose_k4", K4),
        ("nearest_then_conv", RESIZE_CONV),
        ("bilinear_then_conv", RESIZE_CONV),
        ("conv_input_grad_k3", K3),  # the input gradient of conv(k=3, s=2, p=1): output j reads 2j - 1 .. 2j + 1
        ("conv_input_grad_k4", K4),
    ],
)
def test_overlap_counts_are_the_hand_counted_ones(results, name, axis_counts):
    np.testing.assert_array_equal(results["maps"][name]["count"], np.outer(axis_counts, axis_counts))


def test_k3_interior_phases_are_1_2_2_4_and_k4_even(results):
    """Rows and columns alternate 1/2 for k = 3: the interior phases (even/odd row x even/odd column) are 1, 2, 2, 4."""
    np.testing.assert_array_equal(results["maps"]["conv_transpose_k3"]["count_phases"], [[1, 2], [2, 4]])
    np.testing.assert_array_equal(results["maps"]["conv_transpose_k4"]["count_phases"], [[4, 4], [4, 4]])


def test_resize_then_convolve_gives_a_constant_interior_for_any_kernel(results):
    total = float(np.sum(results["kernels"]["3"]))
    for name in ("nearest_then_conv", "bilinear_then_conv"):
        np.testing.assert_allclose(results["maps"][name]["random_kernel_phases"], total, rtol=1e-6)
    assert results["maps"]["conv_transpose_k4"]["random_kernel_phase_spread"] > 0.01  # even overlap, uneven weights


def test_every_fact_holds(results):
    assert results["facts"] and all(results["facts"].values())

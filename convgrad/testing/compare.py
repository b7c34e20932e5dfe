"""Normwise comparison of arrays and pytrees, with a report that locates the worst element.

One criterion everywhere: ``|actual - expected| <= atol + rtol * max|expected|`` for
every element (normwise: the tolerance scales with the largest expected value, so an
expected value of ~0 amid large ones is not held to a relative standard it cannot meet).
A failure reports, in one block, how many elements exceed that allowance, the worst
element's index with its actual and expected values, the largest relative error and the
tolerance, as ``torch.testing.assert_close`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from convgrad.testing.arrays import is_float
from convgrad.testing.tolerances import tolerance_for


def assert_close(
    actual: Any, expected: Any, *, rtol: float | None = None, atol: float | None = None, what: str = "values"
) -> float:
    """Normwise comparison of the floating leaves of two pytrees (``actual``'s dtype sets the tolerance).

    Passes when ``max|actual - expected| <= atol + rtol * max|expected|`` for
    every leaf and NaNs sit in the same places; returns the largest relative
    error ``max|actual - expected| / (max|expected| + atol / rtol)``, which is
    at most ``rtol`` exactly when the comparison passes (the ``atol / rtol``
    floor keeps an expected value of ~0 from reading as a large error).

    Args:
      actual: a pytree whose floating leaves are compared (integer leaves are skipped).
      expected: a pytree with as many floating leaves, in the same order and shapes.
      rtol, atol: override the :data:`~convgrad.testing.TOLERANCES` entry of each
        actual leaf's dtype.
      what: names the comparison in the failure message.

    Returns:
      The largest relative error over the leaves.

    Raises:
      AssertionError: naming ``what`` (and the leaf's path when there are several),
        with the number of mismatched elements, the worst element's index, its
        actual and expected values, the relative error and the tolerance.

    Examples:
      >>> import numpy as np
      >>> from convgrad.testing import assert_close
      >>> f"{assert_close(np.float32([1.0, 2.0]), np.float64([1.0, 2.00001])):.3g}"  # 1e-5 / (2 + 2e-7 / 2e-5)
      '4.98e-06'
      >>> assert_close(np.float32([1.0, 2.0, 3.0]), np.float64([1.0, 2.5, 3.0]), what="y")
      Traceback (most recent call last):
      ...
      AssertionError: y: 1 / 3 elements mismatched (33.3%)
        max abs error 0.5 at index (1,): actual 2, expected 2.5
        max rel error 0.166 > rtol 2e-05 (max abs error / (max|expected| + atol / rtol))
        allowed per element: atol 2e-07 + rtol 2e-05 * max|expected| 3 = 6.02e-05 (dtype float32)
    """
    actual_paths, actual_leaves = _float_leaves(actual)
    expected_leaves = [e for e in map(np.asarray, jax.tree.leaves(expected)) if jnp.issubdtype(e.dtype, jnp.floating)]
    if len(actual_leaves) != len(expected_leaves):
        raise AssertionError(f"{what}: {len(actual_leaves)} arrays vs {len(expected_leaves)} expected")
    worst = 0.0
    for path, a, e in zip(actual_paths, actual_leaves, expected_leaves):
        tolerance = tolerance_for(a.dtype)
        r = tolerance.rtol if rtol is None else rtol
        t = tolerance.atol if atol is None else atol
        a64, e64 = np.asarray(a, np.float64), np.asarray(e, np.float64)
        label = what if len(actual_leaves) == 1 or not path else f"{what}: {path}"
        if a64.shape != e64.shape:
            raise AssertionError(f"{label}: shape {a64.shape} != expected {e64.shape}")
        magnitude = float(np.max(np.abs(np.nan_to_num(e64, nan=0.0)), initial=0.0))
        allowed = t + r * magnitude
        report = mismatch_report(a64, e64, allowed, rtol=r, atol=t, dtype=jnp.dtype(a.dtype).name)
        if report is not None:
            raise AssertionError(f"{label}: {report.text}")
        worst = max(worst, relative_error(a64, e64, rtol=r, atol=t))
    return worst


def relative_error(actual: np.ndarray, expected: np.ndarray, *, rtol: float, atol: float) -> float:
    """``max|actual - expected| / (max|expected| + atol / rtol)``: NaNs ignored; the absolute error if ``rtol`` is 0."""
    actual, expected = np.nan_to_num(actual, nan=0.0), np.nan_to_num(expected, nan=0.0)
    abs_error = float(np.max(np.abs(actual - expected), initial=0.0))
    magnitude = float(np.max(np.abs(expected), initial=0.0))
    return abs_error / (magnitude + atol / rtol) if rtol > 0 else abs_error


class Mismatch:
    """Where ``actual`` and ``expected`` differ by more than the allowance: the counts, the worst element, the text."""

    def __init__(self, mismatched: int, total: int, index: tuple[int, ...], actual: float, expected: float, text: str):
        self.mismatched, self.total, self.index = mismatched, total, index
        self.actual, self.expected, self.text = actual, expected, text


def mismatch_report(
    actual: np.ndarray,
    expected: np.ndarray,
    allowed: float | np.ndarray,
    *,
    rtol: float,
    atol: float,
    dtype: str,
    allowance_text: str | None = None,
    index_text: Callable[[tuple[int, ...]], str] | None = None,
) -> Mismatch | None:
    """``None`` when ``|actual - expected| <= allowed`` everywhere and NaNs coincide; else the located mismatch.

    ``allowed`` is the per-element allowance (a scalar for the normwise
    criterion); ``allowance_text`` explains it (default: the normwise
    formula), and ``index_text`` turns an index into words (default ``(i, j)``).
    """
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    nans_differ = np.isnan(actual) != np.isnan(expected)
    difference = np.abs(np.nan_to_num(actual, nan=0.0) - np.nan_to_num(expected, nan=0.0))
    bad = (difference > allowed) | nans_differ
    if not np.any(bad):
        return None
    where = index_text or (lambda index: str(index))
    total = actual.size
    count = int(np.count_nonzero(bad))
    lines = [f"{count} / {total} elements mismatched ({100 * count / total:.3g}%)"]
    if np.any(nans_differ):
        index = tuple(int(i) for i in np.argwhere(nans_differ)[0])
        lines.append(
            f"NaNs differ at {int(np.count_nonzero(nans_differ))} elements, first at index {where(index)}: "
            f"actual {actual[index]:.6g}, expected {expected[index]:.6g}"
        )
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(np.where(bad, difference, -1.0))), actual.shape))
    lines.append(
        f"max abs error {difference[index]:.3g} at index {where(index)}: "
        f"actual {actual[index]:.6g}, expected {expected[index]:.6g}"
    )
    magnitude = float(np.max(np.abs(np.nan_to_num(expected, nan=0.0)), initial=0.0))
    error = relative_error(actual, expected, rtol=rtol, atol=atol)
    lines.append(f"max rel error {error:.3g} > rtol {rtol:.3g} (max abs error / (max|expected| + atol / rtol))")
    if allowance_text is None:
        allowance_text = (
            f"allowed per element: atol {atol:.3g} + rtol {rtol:.3g} * max|expected| {magnitude:.3g} = "
            f"{float(np.max(allowed)):.3g}"
        )
    lines.append(f"{allowance_text} (dtype {dtype})")
    return Mismatch(count, total, index, float(actual[index]), float(expected[index]), "\n  ".join(lines))


def _float_leaves(tree: Any) -> tuple[list[str], list[Any]]:
    """The floating leaves of ``tree`` and their paths (``jax.tree_util.keystr``)."""
    pairs = [(jax.tree_util.keystr(path), leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]
    pairs = [(path, leaf) for path, leaf in pairs if is_float(leaf)]
    return [p for p, _ in pairs], [leaf for _, leaf in pairs]

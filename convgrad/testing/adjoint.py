"""The dot-product (adjoint) test of a linear map and its claimed transpose."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from convgrad.testing.arrays import on_device
from convgrad.testing.tolerances import tolerance_for


@dataclasses.dataclass(frozen=True)
class AdjointCheck:
    """``<f(x), y>`` and ``<x, f_t(y)>`` and their relative difference (scaled by the Cauchy-Schwarz bound)."""

    forward_inner: float
    transpose_inner: float
    error: float


def check_adjoint(
    f: Callable[[jax.Array], Any],
    f_t: Callable[[Any], jax.Array],
    x_shape: Sequence[int],
    y_shape: Sequence[int],
    *,
    dtype: Any = jnp.float32,
    rtol: float | None = None,
    seed: int = 0,
) -> AdjointCheck:
    """The dot-product test of a linear map ``f`` and its claimed transpose ``f_t``: ``<f(x), y> == <x, f_t(y)>``.

    ``x`` and ``y`` are standard normal of ``x_shape`` / ``y_shape`` in ``dtype``;
    the inner products are taken in float64 and their difference is scaled by
    ``||f(x)|| ||y|| + ||x|| ||f_t(y)||`` (the Cauchy-Schwarz bound).

    Raises:
      AssertionError: when the shapes do not match, or the relative difference
        exceeds ``rtol`` (default the dtype's :data:`~convgrad.testing.TOLERANCES` entry).

    Examples:
      >>> import numpy as np
      >>> from convgrad.testing import check_adjoint
      >>> a = np.arange(6.0).reshape(2, 3)
      >>> bool(check_adjoint(lambda x: a @ x, lambda y: a.T @ y, (3,), (2,)).error < 1e-6)  # float32
      True
      >>> check_adjoint(lambda x: a @ x, lambda y: a[::-1].T @ y, (3,), (2,))
      Traceback (most recent call last):
      ...
      AssertionError: check_adjoint: <f(x), y> = ... but <x, f_t(y)> = ...: relative difference ... > rtol 2e-05 ...
    """
    rng = np.random.default_rng(seed)
    # rounded to dtype by NumPy (ml_dtypes), as jnp would; transferred without a compiled conversion
    x = on_device(rng.standard_normal(tuple(x_shape)).astype(jnp.dtype(dtype)))
    y = on_device(rng.standard_normal(tuple(y_shape)).astype(jnp.dtype(dtype)))
    fx, fty = np.asarray(f(x), np.float64), np.asarray(f_t(y), np.float64)
    if fx.shape != tuple(y_shape) or fty.shape != tuple(x_shape):
        raise AssertionError(
            f"check_adjoint: shapes do not match: f(x).shape={fx.shape} vs y_shape={tuple(y_shape)}, "
            f"f_t(y).shape={fty.shape} vs x_shape={tuple(x_shape)}"
        )
    xs, ys = np.asarray(x, np.float64), np.asarray(y, np.float64)
    forward_inner, transpose_inner = float(np.vdot(fx, ys)), float(np.vdot(xs, fty))
    scale = np.linalg.norm(fx) * np.linalg.norm(ys) + np.linalg.norm(xs) * np.linalg.norm(fty)
    error = abs(forward_inner - transpose_inner) / scale if scale else abs(forward_inner - transpose_inner)
    limit = tolerance_for(dtype).rtol if rtol is None else rtol
    if not error <= limit:
        raise AssertionError(
            f"check_adjoint: <f(x), y> = {forward_inner:.10g} but <x, f_t(y)> = {transpose_inner:.10g}: "
            f"relative difference {error:.3g} > rtol {limit:.3g} (dtype {jnp.dtype(dtype).name})"
        )
    return AdjointCheck(forward_inner, transpose_inner, error)

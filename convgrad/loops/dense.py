"""NumPy loop reference of ``dense``: explicit sums over rows, inputs and outputs."""

from __future__ import annotations

import math

import numpy as np


def rows_of(a: np.ndarray) -> np.ndarray:
    """``(..., n)`` as ``(rows, n)``: every leading axis is a batch axis (either count may be 0)."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def dense(x, w, b=None) -> np.ndarray:
    """``y[r, o] = b[o] + sum_i x[r, i] w[i, o]`` for every row ``r`` of the leading axes, as explicit sums."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    rows = rows_of(x)
    n_in, n_out = w.shape
    y = np.zeros((rows.shape[0], n_out))
    for r in range(rows.shape[0]):
        for o in range(n_out):
            y[r, o] = sum(rows[r, i] * w[i, o] for i in range(n_in))
            if b is not None:
                y[r, o] += b[o]
    return y.reshape(*x.shape[:-1], n_out)


def dense_vjp(x, w, b, g):
    """``(dx, dw, db)``: each product ``x[r, i] w[i, o]`` and each ``b[o]`` of row ``r`` sends ``g[r, o]`` back."""
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
    rows, g_rows = rows_of(x), rows_of(g)
    n_in, n_out = w.shape
    dx, dw, db = np.zeros_like(rows), np.zeros_like(w), np.zeros(n_out)
    for r in range(rows.shape[0]):
        for o in range(n_out):
            for i in range(n_in):
                dx[r, i] += g_rows[r, o] * w[i, o]
                dw[i, o] += rows[r, i] * g_rows[r, o]
            db[o] += g_rows[r, o]  # once per row: a sum over the batch, not a mean
    return dx.reshape(x.shape), dw, None if b is None else db

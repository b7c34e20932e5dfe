"""NumPy loop references of the activations: element by element, and slice by slice along an axis."""

from __future__ import annotations

import math

import numpy as np


def relu(x) -> np.ndarray:
    """``y = max(x, 0)``."""
    return np.maximum(np.asarray(x, np.float64), 0.0)


def relu_vjp(x, g, rule="gradient"):
    """``(dx,)`` by one of the three rules, element by element, from their definitions.

    gradient: ``g`` where ``x > 0`` else 0 (the derivative); deconvnet: ``g``
    where ``g > 0`` else 0, whatever ``x``; guided: ``g`` where both ``x > 0``
    and ``g > 0``, else 0.
    """
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    dx = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        if rule == "gradient":
            passes = x[i] > 0
        elif rule == "deconvnet":
            passes = g[i] > 0
        elif rule == "guided":
            passes = x[i] > 0 and g[i] > 0
        else:
            raise ValueError(f"relu_vjp: unknown rule {rule!r}")
        dx[i] = g[i] if passes else 0.0
    return (dx,)


def sigmoid(x) -> np.ndarray:
    """``1 / (1 + exp(-x))``, as ``exp(x) / (1 + exp(x))`` for negative ``x`` so that nothing overflows."""
    x = np.asarray(x, np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_vjp(x, g):
    """``(dx,)`` with the derivative from its definition, ``exp(-|x|) / (1 + exp(-|x|))^2`` (an even function)."""
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    e = np.exp(-np.abs(x))
    return (g * e / (1 + e) ** 2,)


def tanh(x) -> np.ndarray:
    return np.tanh(np.asarray(x, np.float64))


def tanh_vjp(x, g):
    """``(dx,)`` with the derivative from its definition, ``1 / cosh(x)^2``."""
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    return (g / np.cosh(x) ** 2,)


def vectors(a: np.ndarray, axis: int) -> np.ndarray:
    """The 1-d slices of ``a`` along ``axis``, as the rows of a 2-d view (axis moved last)."""
    moved = np.moveaxis(a, axis, -1)
    return moved.reshape(math.prod(moved.shape[:-1]), a.shape[axis])


def from_vectors(rows: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """Inverse of :func:`vectors`: rows back into ``shape``, the row axis at ``axis``."""
    moved = list(shape)
    moved.append(moved.pop(axis))
    return np.moveaxis(rows.reshape(moved), -1, axis)


def softmax_vector(v: np.ndarray) -> np.ndarray:
    """``exp(v - max v) / sum exp(v - max v)`` of one 1-d slice (an empty slice stays empty)."""
    e = np.exp(v - v.max(initial=-np.inf))
    return e / e.sum()


def softmax(x, axis=-1) -> np.ndarray:
    """``y[k] = exp(x[k] - m) / sum_j exp(x[j] - m)``, ``m = max_j x[j]``, for each slice along ``axis``."""
    x = np.asarray(x, np.float64)
    return from_vectors(np.array([softmax_vector(v) for v in vectors(x, axis)]), x.shape, axis)


def softmax_vjp(x, g, axis=-1):
    """``(dx,)``: ``dx[j] = sum_k g[k] J[k, j]`` with the Jacobian ``J[k, j] = y[k] (delta[k, j] - y[j])``."""
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    dx = []
    for v, g_v in zip(vectors(x, axis), vectors(g, axis)):
        y = softmax_vector(v)
        n = len(v)
        jacobian = [[y[k] * ((k == j) - y[j]) for j in range(n)] for k in range(n)]
        dx.append([sum(g_v[k] * jacobian[k][j] for k in range(n)) for j in range(n)])
    return (from_vectors(np.array(dx), x.shape, axis),)


def log_softmax(x, axis=-1) -> np.ndarray:
    """``y[k] = x[k] - m - log sum_j exp(x[j] - m)`` for each slice along ``axis``."""
    x = np.asarray(x, np.float64)
    with np.errstate(divide="ignore"):  # an empty slice: log(0) of its empty sum, broadcast over no elements
        rows = [v - v.max(initial=-np.inf) - np.log(np.exp(v - v.max(initial=-np.inf)).sum()) for v in vectors(x, axis)]
    return from_vectors(np.array(rows), x.shape, axis)


def log_softmax_vjp(x, g, axis=-1):
    """``(dx,)``: ``dx[j] = sum_k g[k] J[k, j]`` with the Jacobian ``J[k, j] = delta[k, j] - softmax(x)[j]``."""
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    dx = []
    for v, g_v in zip(vectors(x, axis), vectors(g, axis)):
        p = softmax_vector(v)
        n = len(v)
        dx.append([sum(g_v[k] * ((k == j) - p[j]) for k in range(n)) for j in range(n)])
    return (from_vectors(np.array(dx), x.shape, axis),)

"""The dense (fully connected) layer ``y = x w + b`` with a hand-derived VJP.

Read top to bottom: the public ``dense``, its forward (what it saves), its
backward (the derivation as code), ``defvjp``; then the three gradients the
backward is made of, one small function each: ``dense_input_grad``,
``dense_weight_grad`` and ``dense_bias_grad``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from convgrad.ops import arguments
from convgrad.ops.precision import accumulator_dtype
from convgrad.ops.replicas import like_primal


def dense(x: ArrayLike, w: ArrayLike, b: ArrayLike | None = None) -> jax.Array:
    r"""Fully connected layer ``y = x w + b`` over the last axis of ``x``.

    ``x`` has any number of leading (batch) axes; write ``r`` for one of its
    rows, i.e. one index into the leading axes ``...``, ``i`` for an input
    feature and ``o`` for an output feature::

        y[r, o] = b[o] + sum_i x[r, i] w[i, o]

    For a cotangent ``g`` shaped like ``y`` the backward computes, by hand:

    * input gradient: each ``x[r, i]`` meets ``w[i, o]`` in every output ``o``
      of its row, so ``dx[r, i] = sum_o g[r, o] w[i, o]``, i.e. ``dx = g w^T``.
    * weight gradient: ``w[i, o]`` meets ``x[r, i]`` in output ``(r, o)`` of
      every row, so ``dw[i, o] = sum_r x[r, i] g[r, o]``, i.e. ``dw = x^T g``
      with ``x`` and ``g`` flattened to ``(rows, in)`` and ``(rows, out)``: the
      contraction runs over ALL leading axes at once. A 1-d ``x`` is one row and
      ``dw`` is the outer product ``x g^T``.
    * bias gradient: ``db[o] = sum_r g[r, o]``. A sum, not a mean: ``b[o]`` is
      added once to each row's output ``o``, so each row passes its cotangent
      ``g[r, o]`` back to ``b[o]`` once. (If a loss averages over the batch,
      the ``1/rows`` is already inside ``g``; dividing again would count it
      twice.)

    Args:
      x: input, ``(..., in)``, at least 1-d. Floating dtype.
      w: weight, ``(in, out)``. Same dtype as ``x``.
      b: optional bias, ``(out,)``. Same dtype as ``x``.

    Returns:
      ``y``, ``(..., out)``, in the dtype of ``x``. Products are accumulated in
      at least float32.

    Raises:
      TypeError: an argument is not a floating array, or their dtypes differ.
      ValueError: ``x`` is 0-d, ``w`` is not 2-d, ``x.shape[-1] != w.shape[0]``, or
        ``b`` is not ``(out,)``.

    Examples:
      Two rows into one output; the bias gradient sums the two rows' cotangents:

      >>> import jax, jax.numpy as jnp
      >>> from convgrad import dense
      >>> x, w, b = jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.array([[1.0], [10.0]]), jnp.array([0.5])
      >>> dense(x, w, b)
      Array([[21.5],
             [43.5]], dtype=float32)
      >>> dx, dw, db = jax.vjp(dense, x, w, b)[1](jnp.ones((2, 1)))
      >>> dx, dw.ravel(), db
      (Array([[ 1., 10.],
             [ 1., 10.]], dtype=float32), Array([4., 6.], dtype=float32), Array([2.], dtype=float32))

    References:
      ``torch.nn.functional.linear`` (with ``w`` transposed: convgrad's ``w`` is
      ``(in, out)``, as in Flax's ``Dense`` kernel).
    """
    x, w, b = dense_arguments("dense", x, w, b)
    return _dense(x, w, b)


@jax.custom_vjp
def _dense(x: jax.Array, w: jax.Array, b: jax.Array | None) -> jax.Array:
    return dense_forward(x, w, b)


def _dense_fwd(x, w, b):
    """Save ``x`` for the weight gradient and ``w`` for the input gradient; ``b`` marks that a bias exists."""
    return dense_forward(x, w, b), (x, w, b)


def _dense_bwd(residuals, g):
    """``(dx, dw, db)``: the three formulas of the docstring, each summed over the devices that share its argument.

    (:func:`~convgrad.ops.replicas.like_primal`: a no-op outside ``shard_map``.)
    """
    x, w, b = residuals
    x_grad = dense_input_grad(g, w)
    w_grad = dense_weight_grad(x, g)
    b_grad = None if b is None else like_primal(dense_bias_grad(g).astype(b.dtype), b)
    return like_primal(x_grad, x), like_primal(w_grad, w), b_grad


_dense.defvjp(_dense_fwd, _dense_bwd)


def dense_forward(x: jax.Array, w: jax.Array, b: jax.Array | None) -> jax.Array:
    """``y[r, o] = b[o] + sum_i x[r, i] w[i, o]``, one ``dot_general`` contracting the last axis of ``x``."""
    y = lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())), preferred_element_type=accumulator_dtype(x.dtype))
    if b is not None:
        y = y + b
    return y.astype(x.dtype)


def dense_input_grad(g: jax.Array, w: jax.Array) -> jax.Array:
    """``dx[r, i] = sum_o g[r, o] w[i, o]`` (``g w^T``), ``(..., out) -> (..., in)``."""
    dx = lax.dot_general(g, w, (((g.ndim - 1,), (1,)), ((), ())), preferred_element_type=accumulator_dtype(g.dtype))
    return dx.astype(w.dtype)


def dense_weight_grad(x: jax.Array, g: jax.Array) -> jax.Array:
    """``dw[i, o] = sum_r x[r, i] g[r, o]`` (``x^T g``), contracting every leading axis; ``(in, out)``."""
    rows = tuple(range(x.ndim - 1))
    dw = lax.dot_general(x, g, ((rows, rows), ((), ())), preferred_element_type=accumulator_dtype(x.dtype))
    return dw.astype(x.dtype)


def dense_bias_grad(g: jax.Array) -> jax.Array:
    """``db[o] = sum_r g[r, o]``, the sum over every leading axis, accumulated in at least float32."""
    return jnp.sum(g, axis=tuple(range(g.ndim - 1)), dtype=accumulator_dtype(g.dtype))


def dense_arguments(op, x, w, b):
    """Checked ``(x, w, b)`` of a dense layer."""
    x = arguments.as_float_array(op, "x", x)
    w = arguments.as_float_array(op, "w", w)
    b = None if b is None else arguments.as_float_array(op, "b", b)
    arguments.same_dtype(op, x=x, w=w, b=b)
    arguments.ndim_at_least(op, "x", x, 1, "(..., in)")
    arguments.ndim_equal(op, "w", w, 2, "(in, out)")
    if x.shape[-1] != w.shape[0]:
        raise ValueError(
            f"{op}: x.shape[-1]={x.shape[-1]} does not match w.shape[0]={w.shape[0]} "
            f"(x.shape={tuple(x.shape)}, w.shape={tuple(w.shape)})"
        )
    if b is not None and b.shape != (w.shape[1],):
        raise ValueError(f"{op}: b must have shape (out,)=({w.shape[1]},), got b.shape={tuple(b.shape)}")
    return x, w, b

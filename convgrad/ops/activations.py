"""Activations with hand-derived VJPs: ``relu`` (with its two visualization rules), ``sigmoid``, ``tanh``,
``softmax`` and ``log_softmax``.

Each op reads top to bottom: public function, ``_fwd`` (what it saves, and
why), ``_bwd`` (the derivation as code), ``defvjp``, then the small named
functions the backward is made of. Elementwise ops work in the input's dtype;
``softmax`` and ``log_softmax`` sum along an axis and do so in at least float32.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from convgrad.ops import arguments
from convgrad.ops.precision import accumulator_dtype

# ---------------------------------------------------------------------------- relu

RELU_RULES = ("gradient", "deconvnet", "guided")


def relu(x: ArrayLike, rule: str = "gradient") -> jax.Array:
    r"""Rectified linear unit ``y = max(x, 0)``, with a choice of backward rule.

    The forward is always ``y[i] = max(x[i], 0)``. For a cotangent ``g`` shaped
    like ``y`` the backward depends on ``rule``:

    * ``"gradient"``: the true derivative, ``dx[i] = g[i] [x[i] > 0]``. At
      ``x[i] = 0`` exactly the derivative is taken to be 0, as in
      ``jax.nn.relu``.
    * ``"deconvnet"`` (Zeiler & Fergus, 2014): ``dx[i] = max(g[i], 0)``. The
      positive part of the signal coming back, IGNORING the forward input: a
      deconvnet passes the reconstruction through a relu of its own.
    * ``"guided"`` (Springenberg et al., 2015, guided backpropagation):
      ``dx[i] = max(g[i], 0) [x[i] > 0]``, both masks: the gradient's mask on
      the forward input and the deconvnet's mask on the signal.

    Only ``"gradient"`` is a derivative. ``"deconvnet"`` and ``"guided"`` are
    visualization rules: ``jax.grad`` of a function using them returns a
    saliency signal, not a gradient, and finite differences will not agree
    with it. The verification registry therefore checks the ``"gradient"``
    rule; the other two are tested against their definitions.

    Args:
      x: input, any shape. Floating dtype.
      rule: ``"gradient"``, ``"deconvnet"`` or ``"guided"``; static.

    Returns:
      ``y``, shaped and typed like ``x``.

    Raises:
      TypeError: ``x`` is not an array of a floating dtype.
      ValueError: ``rule`` is not one of the three rules.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from convgrad import relu
      >>> x, g = jnp.array([-1.0, 2.0, 3.0]), jnp.array([5.0, -6.0, 7.0])
      >>> relu(x)
      Array([0., 2., 3.], dtype=float32)
      >>> for rule in ("gradient", "deconvnet", "guided"):
      ...     print(rule, jax.vjp(lambda x: relu(x, rule), x)[1](g)[0])
      gradient [ 0. -6.  7.]
      deconvnet [5. 0. 7.]
      guided [0. 0. 7.]

    References:
      ``jax.nn.relu``; M. D. Zeiler and R. Fergus, "Visualizing and Understanding
      Convolutional Networks", ECCV 2014 (deconvnet); J. T. Springenberg et al.,
      "Striving for Simplicity: The All Convolutional Net", ICLR workshop 2015 (guided).
    """
    x = arguments.as_float_array("relu", "x", x)
    if not isinstance(rule, str) or rule not in RELU_RULES:
        allowed = ", ".join(repr(r) for r in RELU_RULES)
        raise ValueError(f"relu: rule={rule!r} is not one of {allowed}")
    return _relu(rule, x)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _relu(rule: str, x: jax.Array) -> jax.Array:
    return jnp.maximum(x, 0)


def _relu_fwd(rule, x):
    """Save the boolean mask ``x > 0`` for ``"gradient"`` and ``"guided"``; nothing for ``"deconvnet"``.

    The mask is exactly what the rules read, and at one byte per element it is
    the smallest residual that carries it (the output ``y`` would carry it too,
    as ``y > 0``, at two to eight bytes per element and with a comparison in the
    backward). The deconvnet rule never looks at the forward input, so it keeps
    nothing alive.
    """
    positive = None if rule == "deconvnet" else x > 0
    return jnp.maximum(x, 0), positive


def _relu_bwd(rule, positive, g):
    """``dx`` by the chosen rule."""
    if rule == "gradient":
        return (gradient_rule(g, positive),)
    if rule == "deconvnet":
        return (deconvnet_rule(g),)
    return (guided_rule(g, positive),)


_relu.defvjp(_relu_fwd, _relu_bwd)


def gradient_rule(g: jax.Array, positive: jax.Array) -> jax.Array:
    """``dx[i] = g[i] [x[i] > 0]``: the derivative of ``max(x, 0)`` (0 at ``x = 0``)."""
    return jnp.where(positive, g, jnp.zeros_like(g))


def deconvnet_rule(g: jax.Array) -> jax.Array:
    """``dx[i] = max(g[i], 0)``: the signal's positive part, whatever the forward input was."""
    return jnp.maximum(g, 0)


def guided_rule(g: jax.Array, positive: jax.Array) -> jax.Array:
    """``dx[i] = max(g[i], 0) [x[i] > 0]``: both the gradient's and the deconvnet's mask."""
    return jnp.where(positive, jnp.maximum(g, 0), jnp.zeros_like(g))


# ---------------------------------------------------------------------------- sigmoid


def sigmoid(x: ArrayLike) -> jax.Array:
    r"""Logistic sigmoid ``y = 1 / (1 + exp(-x))``, elementwise.

    Its derivative is written in the output: ``dy/dx = exp(-x) / (1 + exp(-x))^2
    = y (1 - y)``, so for a cotangent ``g``::

        dx[i] = g[i] y[i] (1 - y[i])

    The forward is ``lax.logistic``, which never overflows: it saturates to
    exactly 0 and 1 for large ``|x|`` (``sigmoid(-1000.0) == 0.0``).

    Args:
      x: input, any shape. Floating dtype.

    Returns:
      ``y``, shaped and typed like ``x``, in ``[0, 1]``.

    Raises:
      TypeError: ``x`` is not an array of a floating dtype.

    Examples:
      At ``x = 0``, ``y = 1/2`` and the slope is ``y (1 - y) = 1/4``:

      >>> import jax, jax.numpy as jnp
      >>> from convgrad import sigmoid
      >>> sigmoid(jnp.array([0.0, -1000.0]))
      Array([0.5, 0. ], dtype=float32)
      >>> jax.grad(lambda x: sigmoid(x))(0.0)
      Array(0.25, dtype=float32, weak_type=True)

    References:
      ``jax.nn.sigmoid`` / ``torch.sigmoid``.
    """
    return _sigmoid(arguments.as_float_array("sigmoid", "x", x))


@jax.custom_vjp
def _sigmoid(x: jax.Array) -> jax.Array:
    return lax.logistic(x)


def _sigmoid_fwd(x):
    """Save the output ``y``: the derivative ``y (1 - y)`` needs nothing else."""
    y = lax.logistic(x)
    return y, y


def _sigmoid_bwd(y, g):
    """``dx = g y (1 - y)``."""
    return (g * y * (1 - y),)


_sigmoid.defvjp(_sigmoid_fwd, _sigmoid_bwd)


# ---------------------------------------------------------------------------- tanh


def tanh(x: ArrayLike) -> jax.Array:
    r"""Hyperbolic tangent ``y = tanh(x)``, elementwise.

    Its derivative is written in the output: ``dy/dx = 1 / cosh(x)^2 = 1 - y^2``,
    so for a cotangent ``g``::

        dx[i] = g[i] (1 - y[i]^2)

    computed as ``g (1 - y) (1 + y)``: for ``y`` near 1, ``1 - y`` is exact
    where ``1 - y * y`` would first round ``y * y``. The forward ``jnp.tanh``
    saturates to exactly -1 and 1, never overflowing.

    Args:
      x: input, any shape. Floating dtype.

    Returns:
      ``y``, shaped and typed like ``x``, in ``[-1, 1]``.

    Raises:
      TypeError: ``x`` is not an array of a floating dtype.

    Examples:
      At ``x = 0``, ``y = 0`` and the slope is ``1 - y^2 = 1``:

      >>> import jax, jax.numpy as jnp
      >>> from convgrad import tanh
      >>> tanh(jnp.array([0.0, 100.0]))
      Array([0., 1.], dtype=float32)
      >>> jax.grad(lambda x: tanh(x))(0.0)
      Array(1., dtype=float32, weak_type=True)

    References:
      ``jnp.tanh`` / ``torch.tanh``.
    """
    return _tanh(arguments.as_float_array("tanh", "x", x))


@jax.custom_vjp
def _tanh(x: jax.Array) -> jax.Array:
    return jnp.tanh(x)


def _tanh_fwd(x):
    """Save the output ``y``: the derivative ``1 - y^2`` needs nothing else."""
    y = jnp.tanh(x)
    return y, y


def _tanh_bwd(y, g):
    """``dx = g (1 - y^2) = g (1 - y) (1 + y)``."""
    return (g * (1 - y) * (1 + y),)


_tanh.defvjp(_tanh_fwd, _tanh_bwd)


# ---------------------------------------------------------------------------- softmax


def softmax(x: ArrayLike, axis: int = -1) -> jax.Array:
    r"""Softmax along ``axis``: ``y[k] = exp(x[k]) / sum_j exp(x[j])``.

    Indices ``j, k`` run along ``axis``; every other axis is a batch axis. The
    forward subtracts ``m = max_j x[j]`` first (``exp(x[k] - m)`` is at most 1,
    so logits of any magnitude, e.g. ``1e4``, give finite values; the shift
    cancels in the ratio). The Jacobian is written in the output,
    ``dy[k]/dx[j] = y[k] (delta[k, j] - y[j])``, so for a cotangent ``g``::

        dx[j] = sum_k g[k] y[k] (delta[k, j] - y[j]) = y[j] (g[j] - sum_k g[k] y[k])

    The inner product ``sum_k g[k] y[k]`` is the part of ``g`` that would move
    every output at once; softmax's outputs always sum to 1, so it is removed.

    Args:
      x: logits, at least 1-d. Floating dtype.
      axis: the axis to normalize over, an int (negative counts from the end).

    Returns:
      ``y``, shaped and typed like ``x``; sums to 1 along ``axis``. Computed
      in at least float32. An empty ``axis`` gives an empty result.

    Raises:
      TypeError: ``x`` is not a floating array, or ``axis`` is not an int.
      ValueError: ``x`` is 0-d, or ``axis`` is out of range.

    Examples:
      Two equal logits share the probability; a cotangent that is the same
      for every output moves nothing (the outputs always sum to 1):

      >>> import jax, jax.numpy as jnp
      >>> from convgrad import softmax
      >>> x = jnp.array([0.0, 0.0, 1e4])
      >>> softmax(jnp.array([1.0, 1.0])), softmax(x)
      (Array([0.5, 0.5], dtype=float32), Array([0., 0., 1.], dtype=float32))
      >>> jax.vjp(softmax, jnp.array([1.0, 2.0]))[1](jnp.array([3.0, 3.0]))[0]
      Array([0., 0.], dtype=float32)

    References:
      ``jax.nn.softmax`` / ``torch.nn.functional.softmax``.
    """
    x, axis = axis_arguments("softmax", x, axis)
    return _softmax(axis, x)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _softmax(axis: int, x: jax.Array) -> jax.Array:
    return softmax_forward(x, axis)


def _softmax_fwd(axis, x):
    """Save the output ``y``: the Jacobian ``y[k] (delta[k, j] - y[j])`` is written in ``y`` alone."""
    y = softmax_forward(x, axis)
    return y, y


def _softmax_bwd(axis, y, g):
    """``dx = y (g - sum(g y))`` along ``axis``."""
    return (softmax_input_grad(y, g, axis),)


_softmax.defvjp(_softmax_fwd, _softmax_bwd)


def shifted_logits(x: jax.Array, axis: int) -> jax.Array:
    """``z = x - max(x)`` along ``axis``, in at least float32: every ``exp(z)`` is at most 1.

    The max is a constant of the shift (``lax.stop_gradient``): the outputs of
    softmax, log_softmax and the cross-entropy do not depend on it, so its
    derivative, which would cancel exactly, is not taken when JAX
    differentiates these forwards for higher-order gradients.
    """
    x_acc = x.astype(accumulator_dtype(x.dtype))
    return x_acc - lax.stop_gradient(jnp.max(x_acc, axis=axis, keepdims=True, initial=-jnp.inf))


def softmax_forward(x: jax.Array, axis: int) -> jax.Array:
    """``y = exp(z) / sum(exp(z))`` with ``z = x - max(x)``."""
    e = jnp.exp(shifted_logits(x, axis))
    return (e / jnp.sum(e, axis=axis, keepdims=True)).astype(x.dtype)


def softmax_input_grad(y: jax.Array, g: jax.Array, axis: int) -> jax.Array:
    """``dx[j] = y[j] (g[j] - sum_k g[k] y[k])``, in at least float32."""
    acc_dtype = accumulator_dtype(y.dtype)
    y, g_acc = y.astype(acc_dtype), g.astype(acc_dtype)
    return (y * (g_acc - jnp.sum(g_acc * y, axis=axis, keepdims=True))).astype(g.dtype)


# ---------------------------------------------------------------------------- log_softmax


def log_softmax(x: ArrayLike, axis: int = -1) -> jax.Array:
    r"""Log-softmax along ``axis``: ``y[k] = x[k] - log sum_j exp(x[j])``.

    Computed as ``z[k] - log sum_j exp(z[j])`` with ``z = x - max_j x[j]``, so
    logits of any magnitude give finite values. With ``p = softmax(x)`` the
    Jacobian is ``dy[k]/dx[j] = delta[k, j] - p[j]``, so for a cotangent ``g``::

        dx[j] = sum_k g[k] (delta[k, j] - p[j]) = g[j] - p[j] sum_k g[k]

    and ``p = exp(y)`` comes from the output.

    Args:
      x: logits, at least 1-d. Floating dtype.
      axis: the axis to normalize over, an int (negative counts from the end).

    Returns:
      ``y``, shaped and typed like ``x``; ``exp(y)`` sums to 1 along ``axis``.
      Computed in at least float32. An empty ``axis`` gives an empty result.

    Raises:
      TypeError: ``x`` is not a floating array, or ``axis`` is not an int.
      ValueError: ``x`` is 0-d, or ``axis`` is out of range.

    Examples:
      Two equal logits each get ``log(1/2)``; the gradient of one output is
      its one-hot minus the probabilities:

      >>> import jax, jax.numpy as jnp
      >>> from convgrad import log_softmax
      >>> log_softmax(jnp.array([3.0, 3.0]))
      Array([-0.6931472, -0.6931472], dtype=float32)
      >>> jax.grad(lambda x: log_softmax(x)[0])(jnp.array([3.0, 3.0]))
      Array([ 0.5, -0.5], dtype=float32)

    References:
      ``jax.nn.log_softmax`` / ``torch.nn.functional.log_softmax``.
    """
    x, axis = axis_arguments("log_softmax", x, axis)
    return _log_softmax(axis, x)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _log_softmax(axis: int, x: jax.Array) -> jax.Array:
    return log_softmax_forward(x, axis)


def _log_softmax_fwd(axis, x):
    """Save the output ``y``: ``softmax(x) = exp(y)``, without the max and the sum again."""
    y = log_softmax_forward(x, axis)
    return y, y


def _log_softmax_bwd(axis, y, g):
    """``dx = g - exp(y) sum(g)`` along ``axis``."""
    return (log_softmax_input_grad(y, g, axis),)


_log_softmax.defvjp(_log_softmax_fwd, _log_softmax_bwd)


def log_softmax_forward(x: jax.Array, axis: int) -> jax.Array:
    """``y = z - log sum(exp(z))`` with ``z = x - max(x)``."""
    z = shifted_logits(x, axis)
    return (z - jnp.log(jnp.sum(jnp.exp(z), axis=axis, keepdims=True))).astype(x.dtype)


def log_softmax_input_grad(y: jax.Array, g: jax.Array, axis: int) -> jax.Array:
    """``dx[j] = g[j] - p[j] sum_k g[k]`` with ``p = exp(y)``, in at least float32."""
    acc_dtype = accumulator_dtype(y.dtype)
    g_acc = g.astype(acc_dtype)
    return (g_acc - jnp.exp(y.astype(acc_dtype)) * jnp.sum(g_acc, axis=axis, keepdims=True)).astype(g.dtype)


def axis_arguments(op: str, x: ArrayLike, axis: object) -> tuple[jax.Array, int]:
    """Checked logits and their normalization axis in ``[0, x.ndim)``."""
    x = arguments.as_float_array(op, "x", x)
    arguments.ndim_at_least(op, "x", x, 1, "(it needs an axis to normalize over)")
    return x, arguments.as_axis(op, axis, "x", x)

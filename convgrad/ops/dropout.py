"""Inverted dropout with a hand-derived VJP: the mask drawn once from a PRNG key, saved, and applied again backward.

Read top to bottom: the public ``dropout`` (argument checks, the mask), the
``custom_vjp`` function, ``_fwd`` (what it saves, and why), ``_bwd`` (the
derivation as code), ``defvjp``; then the mask and the argument checks.
"""

from __future__ import annotations

import numbers
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from convgrad.ops import arguments
from convgrad.ops.replicas import like_primal


def dropout(x: ArrayLike, rate: float, key: jax.Array | None, *, training: bool = True) -> jax.Array:
    r"""Inverted dropout: zero each entry with probability ``rate``, scale the kept ones by ``1 / (1 - rate)``.

    ``i`` is a multi-index into ``x`` (any shape). The mask is part of the
    definition: it is drawn from ``key`` as ``jax.random.bernoulli(key,
    float32(1 - rate), x.shape)``, i.e. from float32 uniforms ``u`` (the same
    mask for every dtype of ``x`` and with or without ``jax_enable_x64``)::

        keep[i] = u[i] < 1 - rate,        u = jax.random.uniform(key, x.shape, float32)

        y[i] = keep[i] x[i] / (1 - rate)

    Each entry survives with probability ``1 - rate``, so ``E[y[i]] = x[i]``: the
    scale is applied in training (inverted dropout) and evaluation is the
    identity. ``y`` is linear in ``x`` with a diagonal Jacobian
    ``dy[i]/dx[j] = delta[i, j] keep[i] / (1 - rate)``, so for a cotangent ``g``
    shaped like ``y``::

        dx[i] = keep[i] g[i] / (1 - rate)

    the same mask, the same scale: a dropped entry gets no gradient. With
    ``training=False`` or ``rate=0``, ``y = x`` and ``dx = g`` (no mask is drawn
    and ``key`` may be ``None``). ``rate`` and ``key`` have no gradient.

    Args:
      x: input, any shape (zero-size too). Floating dtype.
      rate: the probability ``p`` of dropping an entry, a Python float in
        ``[0, 1)``; static.
      key: a JAX PRNG key: a typed key (``jax.random.key(seed)``, shape ``()``)
        or a raw one (``jax.random.PRNGKey(seed)``, ``uint32`` of shape ``(2,)``);
        both spell the same key and draw the same mask. One key per call: a
        batch of keys is not accepted.
      training: ``True`` (the default) drops; ``False`` is the identity.

    Returns:
      ``y``, shaped and typed like ``x``.

    Raises:
      TypeError: ``x`` not a floating array; ``rate`` not a real number (a traced
        ``rate`` included); ``training`` not a bool; ``key`` not a single PRNG key
        when a mask is drawn.
      ValueError: ``rate`` outside ``[0, 1)``.

    Examples:
      Each entry of ``x = 1..6`` is either dropped (0) or kept and doubled
      (``rate = 0.5``), and the gradient of ``sum(y)`` is 2 exactly where the
      entry was kept:

      >>> import jax, jax.numpy as jnp, convgrad
      >>> x = jnp.arange(1.0, 7.0)
      >>> key = jax.random.key(0)
      >>> convgrad.dropout(x, 0.5, key)
      Array([ 0.,  0.,  6.,  8.,  0., 12.], dtype=float32)
      >>> jax.grad(lambda x: convgrad.dropout(x, 0.5, key).sum())(x)
      Array([0., 0., 2., 2., 0., 2.], dtype=float32)
      >>> convgrad.dropout(x, 0.5, key, training=False)
      Array([1., 2., 3., 4., 5., 6.], dtype=float32)

    References:
      Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from
      Overfitting", JMLR 2014; ``torch.nn.functional.dropout``
      (https://pytorch.org/docs/stable/generated/torch.nn.functional.dropout.html),
      whose mask comes from PyTorch's generator instead of a key.
    """
    x, rate, key, training = dropout_arguments("dropout", x, rate, key, training)
    if not training or rate == 0.0:
        return x
    return _dropout(rate, x, dropout_mask(key, rate, x.shape))


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _dropout(rate: float, x: jax.Array, keep: jax.Array) -> jax.Array:
    return apply_mask(x, keep, rate)


def _dropout_fwd(rate, x, keep):
    """Save the boolean mask ``keep``, and an empty slice of ``x`` for its type.

    The backward multiplies by exactly ``keep``. Saving it (one byte per entry,
    as PyTorch's ``native_dropout`` does) rather than the key means the backward
    never re-runs the random number generator: ``keep`` is an input of this
    function, drawn once by :func:`dropout`, so the backward cannot draw a
    different mask from the forward's. The empty slice (no elements) carries the
    ``shard_map`` axes over which ``x`` varies, for
    :func:`~convgrad.ops.replicas.like_primal`.
    """
    return apply_mask(x, keep, rate), (keep, x.reshape(-1)[:0])


def _dropout_bwd(rate, residuals, g):
    """``dx = keep g / (1 - rate)``: the forward's own mask and scale, summed over the devices that share ``x``.

    Under ``shard_map`` a replicated ``x`` with each device's own key (each its own
    mask) feeds every device's term, so its cotangent is the sum of theirs
    (:func:`~convgrad.ops.replicas.like_primal`; a no-op outside ``shard_map``). The
    mask has no cotangent.
    """
    keep, x_type = residuals
    return like_primal(dropout_input_grad(g, keep, rate), x_type), None


_dropout.defvjp(_dropout_fwd, _dropout_bwd)


def apply_mask(a: jax.Array, keep: jax.Array, rate: float) -> jax.Array:
    """``keep[i] a[i] / (1 - rate)``, in ``a``'s dtype: the forward on ``x`` and the backward on ``g``."""
    return jnp.where(keep, a * (1.0 / (1.0 - rate)), jnp.zeros((), a.dtype)).astype(a.dtype)


def dropout_input_grad(g: jax.Array, keep: jax.Array, rate: float) -> jax.Array:
    """``dx[i] = keep[i] g[i] / (1 - rate)``: the cotangent through the forward's mask, with the forward's scale."""
    return apply_mask(g, keep, rate)


def dropout_mask(key: jax.Array, rate: float, shape: tuple[int, ...]) -> jax.Array:
    """``keep = uniform(key, shape, float32) < float32(1 - rate)``, boolean; independent of dtype and x64 mode.

    The probability is a float32 scalar on purpose: ``jax.random.bernoulli``
    draws its uniforms in the dtype of ``p``, and a Python float would make it
    float64 under ``jax_enable_x64``, a different mask.
    """
    return jax.random.bernoulli(key, np.float32(1.0 - rate), shape)


def dropout_arguments(op, x, rate, key, training):
    """Checked ``(x, rate, key, training)``; a raw ``uint32`` key comes back as the typed key it spells."""
    x = arguments.as_float_array(op, "x", x)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"{op}: training must be a bool, got training={training!r}")
    if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, numbers.Real):
        raise TypeError(f"{op}: rate must be a Python float in [0, 1) (static, not traced), got rate={rate!r}")
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{op}: rate must be in [0, 1), got rate={rate!r}")
    if not training or rate == 0.0:
        return x, rate, key, bool(training)  # no mask is drawn: key is not read
    return x, rate, as_key(op, key), True


def as_key(op: str, key: object) -> jax.Array:
    """One typed PRNG key from ``jax.random.key(seed)`` (shape ``()``) or ``jax.random.PRNGKey(seed)`` (``uint32``)."""
    expected = "a JAX PRNG key: jax.random.key(seed) (shape ()) or jax.random.PRNGKey(seed) (uint32, shape (2,))"
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    if dtype is None or shape is None:
        raise TypeError(f"{op}: key must be {expected}, got {type(key).__name__}")
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
        if shape != ():
            raise ValueError(f"{op}: key must be a single PRNG key of shape (), got key.shape={tuple(shape)}")
        return key
    if dtype != jnp.uint32:
        raise TypeError(f"{op}: key must be {expected}, got key.dtype={dtype}, key.shape={tuple(shape)}")
    try:
        typed = jax.random.wrap_key_data(key)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{op}: key must be {expected}, got a uint32 array of key.shape={tuple(shape)}") from error
    if typed.shape != ():
        raise ValueError(f"{op}: key must be a single PRNG key, got a batch of raw keys, key.shape={tuple(shape)}")
    return typed

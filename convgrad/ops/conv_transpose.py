"""Transposed N-d convolution (PyTorch's ConvTranspose) with a hand-derived VJP, and ``zero_insert``.

Read top to bottom: the public ``conv_transpose``, its forward (what it saves),
its backward (the derivation as code), ``defvjp``; then ``zero_insert``, the
teaching helper that shows the intermediate map explicitly, and the argument
checks. The transposed convolution is the input gradient of
:func:`convgrad.conv`, so its forward *is* :func:`convgrad.ops.conv_textbook.conv_input_grad`
and its backward is made of the forward convolution, ``conv_weight_grad`` and
``conv_bias_grad`` from :mod:`convgrad.ops.conv_textbook`. Every piece is described by
one :class:`~convgrad.ops.geometry.ConvGeometry`: that of the convolution this op is
the transpose of (padding ``(p, p - output_padding)``, see
:func:`convgrad.ops.geometry.conv_transpose_padding`).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from convgrad.ops import arguments, conv_textbook
from convgrad.ops.geometry import ConvGeometry, conv_transpose_output_size, conv_transpose_padding, dilated_size
from convgrad.ops.replicas import like_primal


def conv_transpose(
    x: ArrayLike,
    w: ArrayLike,
    b: ArrayLike | None = None,
    *,
    stride: int | tuple[int, ...] = 1,
    padding: int | tuple[int, ...] = 0,
    output_padding: int | tuple[int, ...] = 0,
    dilation: int | tuple[int, ...] = 1,
    groups: int = 1,
) -> jax.Array:
    r"""Transposed convolution ``y = x *^T w + b``, with PyTorch's ConvTranspose meaning and weight layout.

    Each input sample scatters a copy of the kernel, scaled by its value, into
    the output, ``s`` samples apart; overlapping copies add. With ``G = groups``,
    ``C`` input and ``O`` output channels, input channel ``c = g C/G + c'`` feeds
    only the ``O/G`` output channels ``o = g O/G + o'`` of its group ``g``. In
    1-d (2-d and 3-d repeat each spatial index), first onto the full footprint
    ``y_full`` of ``(in - 1) s + d (k - 1) + 1`` samples::

        y_full[n, g O/G + o', i s + k d] += x[n, g C/G + c', i] w[g C/G + c', o', k]    for all c', i, k

    then the output crops ``p`` samples from each side of ``y_full``, and
    ``output_padding`` adds samples at the high end (zeros where ``y_full``
    ended), ``y[n, o, j] = b[o] + y_full[n, o, j + p]``. As a gather::

        y[n, o, j] = b[o] + sum_{c', i, k : i s + k d = j + p} x[n, c, i] w[c, o', k]

    **Why it is a convolution with a flipped, channel-swapped kernel over a
    zero-inserted input.** Put ``x_up = zero_insert(x, s)`` (``x_up[n, c, i s] =
    x[n, c, i]``, ``s - 1`` zeros between samples, length ``(in - 1) s + 1``);
    then the gather is ``y[n, o, j] = b[o] + sum_{c', k} x_up[n, c, j + p - k d]
    w[c, o', k]`` (zero outside ``x_up``). Output ``j`` reads tap ``k`` at
    offset ``-k d``: the taps run backwards. Rename ``kk = K - 1 - k`` and pad
    ``x_up`` by ``lo = d (K - 1) - p``, so ``x_up[j + p - k d] = x_up_pad[j + kk d]``
    (and by ``hi = d (K - 1) - p + output_padding`` so the last window fits)::

        y[n, o, j] = b[o] + sum_{c', kk} x_up_pad[n, c, j + kk d] w_t[o, c', kk],
        w_t[g O/G + o', c', kk] = w[g C/G + c', o', K - 1 - kk]

    a plain stride-1 correlation at dilation ``d`` with the kernel flipped in
    space and, since ``w``'s first axis indexes this op's *input* channels, with
    in/out channels swapped per group: :func:`convgrad.flip_and_swap`. The whole
    map is :func:`convgrad.ops.conv_textbook.conv_input_grad`: ``conv_transpose(x, w)``
    is the input gradient of ``z -> conv(z, w)`` (same ``s``, ``p``, ``d``,
    ``G``) at cotangent ``x``, i.e. the transpose of conv's matrix, hence the
    name: for ``output_padding < s``, ``<conv(z, w), x> = <z, conv_transpose(x, w)>``.

    **Gradients.** For a cotangent ``g`` shaped like ``y``, let ``g_pad`` be
    ``g`` put back onto the footprint, ``g_pad[n, o, j + p] = g[n, o, j]``
    (``p`` zeros low, ``p - output_padding`` high, negative crops:
    :func:`~convgrad.ops.geometry.conv_transpose_padding`). The scatter term
    ``x[n, c, i] w[c, o', k]`` lands on output ``j = i s + k d - p``, so its
    cotangent is ``g_pad[n, o, i s + k d]``; the product rule sends it to each
    factor (terms in the ``output_padding`` samples past ``y_full`` do not
    exist, so those samples of ``g`` reach nothing). The map is bilinear, with
    ``<conv_transpose(x, w), g> = <x, conv(g, w)>``:

    * input gradient: the forward convolution of ``g`` with the same ``w``
      (stride ``s``, dilation ``d``, groups ``G``, padding ``(p, p -
      output_padding)``, which gives exactly ``in`` outputs, also when
      ``output_padding >= s``, as PyTorch allows for ``d > s``)::

        dx[n, c, i] = sum_{o', k} g_pad[n, g O/G + o', i s + k d] w[c, o', k]

    * weight gradient: a correlation of the cotangent (as the "input") with
      ``x`` (as the "cotangent"), summing over the batch: exactly
      ``conv_weight_grad(g, x)`` of the convolution this op transposes, whose
      formula is conv's ``dw`` with ``x_pad -> g_pad`` and ``g -> x``::

        dw[c, o', k] = sum_{n, i} g_pad[n, g O/G + o', i s + k d] x[n, c, i]

    * bias gradient: ``db[o] = sum_{n, j} g[n, o, j]``, a sum: ``b[o]`` is
      added once to each output sample of channel ``o``.

    Example, the seed question (a 3x7x7 input and one 3x3x3 filter at stride 2
    give 1x3x3; the transposed convolution maps a 1x3x3 map back to 3x7x7):

    >>> import jax.numpy as jnp
    >>> from convgrad import conv, conv_transpose, flip_and_swap, zero_insert
    >>> w = jnp.arange(27.0).reshape(1, 3, 3, 3)   # conv: (O, C, kh, kw); conv_transpose: (C_in, C_out, kh, kw)
    >>> conv(jnp.ones((1, 3, 7, 7)), w, stride=2).shape
    (1, 1, 3, 3)
    >>> z = jnp.arange(9.0).reshape(1, 1, 3, 3)
    >>> zero_insert(z, 2).shape                     # s - 1 = 1 zero between samples
    (1, 1, 5, 5)
    >>> z_pad = jnp.pad(zero_insert(z, 2), ((0, 0), (0, 0), (2, 2), (2, 2)))   # d (k - 1) - p = 2 each side
    >>> z_pad.shape
    (1, 1, 9, 9)
    >>> flip_and_swap(w).shape
    (3, 1, 3, 3)
    >>> y = conv_transpose(z, w, stride=2)
    >>> y.shape
    (1, 3, 7, 7)
    >>> bool(jnp.array_equal(conv(z_pad, flip_and_swap(w)), y))
    True

    Args:
      x: input, ``(N, C, *in)`` (``NCH``, ``NCHW`` or ``NCDHW``). Floating dtype.
      w: kernel, ``(C, O/G, *k)`` as in PyTorch; its rank sets the number of
        spatial dims (1, 2 or 3). Same dtype as ``x``.
      b: optional bias, ``(O,)``.
      stride: ``s``, an int or one per spatial dim.
      padding: ``p >= 0``, cropped from both sides; an int or one per spatial dim.
      output_padding: extra samples at the high end of each spatial dim, an int
        or one per spatial dim, each ``< max(s, d)`` (PyTorch's rule).
      dilation: ``d``, the spacing of kernel taps; an int or one per spatial dim.
      groups: ``G``; must divide ``C``. ``O = G * w.shape[1]``.

    Returns:
      ``y``, ``(N, O, *out)`` with
      ``out = (in - 1) s - 2 p + d (k - 1) + output_padding + 1`` per spatial dim.
    """
    x, w, b, geometry, out_spatial = conv_transpose_arguments(
        x, w, b, stride, padding, output_padding, dilation, groups
    )
    return _conv_transpose(geometry, out_spatial, x, w, b)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _conv_transpose(
    geometry: ConvGeometry, out_spatial: tuple[int, ...], x: jax.Array, w: jax.Array, b: jax.Array | None
) -> jax.Array:
    return conv_transpose_forward(x, w, b, geometry, out_spatial)


def _conv_transpose_fwd(geometry, out_spatial, x, w, b):
    """Save ``x`` for the weight gradient and ``w`` for the input gradient; ``b`` marks that a bias exists."""
    return conv_transpose_forward(x, w, b, geometry, out_spatial), (x, w, b)


def _conv_transpose_bwd(geometry, out_spatial, residuals, g):
    """``(dx, dw, db)``: the three formulas of the docstring, each summed over the devices that share its argument.

    (:func:`~convgrad.ops.replicas.like_primal`: a no-op outside ``shard_map``.)

    ``geometry`` is that of the convolution whose input gradient this op is. In
    its terms ``g`` plays that convolution's input and ``x`` its cotangent, so
    ``dx`` is its forward pass on ``g`` and ``dw`` its weight gradient.
    """
    x, w, b = residuals
    x_grad = conv_textbook.conv_forward(g, w, None, geometry)
    w_grad = conv_textbook.conv_weight_grad(g, x, geometry, w.shape[2:])
    b_grad = None if b is None else like_primal(conv_textbook.conv_bias_grad(g, geometry).astype(b.dtype), b)
    return like_primal(x_grad, x), like_primal(w_grad, w), b_grad


_conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


def conv_transpose_forward(
    x: jax.Array, w: jax.Array, b: jax.Array | None, geometry: ConvGeometry, out_spatial: tuple[int, ...]
) -> jax.Array:
    """``y = x *^T w + b``: conv's input gradient at cotangent ``x`` (zero insertion, padding, flipped kernel)."""
    y = conv_textbook.conv_input_grad(x, w, geometry, out_spatial)
    if b is None:
        return y
    return y + b.reshape(1, -1, *(1,) * len(out_spatial))


def zero_insert(x: ArrayLike, stride: int | tuple[int, ...]) -> jax.Array:
    """``x_up[n, c, *(i s)] = x[n, c, *i]``: ``s - 1`` zeros between samples along each spatial dim.

    Channel-first ``(N, C, *in)`` -> ``(N, C, *((in - 1) s + 1))``; no zeros
    after the last sample. The intermediate map of :func:`conv_transpose` (lax
    does the same inside the convolution, as ``lhs_dilation``).

    >>> import jax.numpy as jnp
    >>> zero_insert(jnp.array([[[1.0, 2.0, 3.0]]]), 2)
    Array([[[1., 0., 2., 0., 3.]]], dtype=float32)
    """
    x = jnp.asarray(x)
    if x.ndim < 3:
        raise ValueError(f"zero_insert: x must be (N, C, *spatial) with 1 or more spatial dims, got x.shape={x.shape}")
    stride = arguments.as_tuple("zero_insert", "stride", stride, x.ndim - 2)
    return lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (0, 0, 0), *((0, 0, s - 1) for s in stride)])


def conv_transpose_arguments(x, w, b, stride, padding, output_padding, dilation, groups):
    """Checked arrays, the :class:`ConvGeometry` of the convolution this op transposes, and the output size."""
    op = "conv_transpose"
    x, w, b = arguments.conv_operands(op, x, w, b, "(C_in, C_out/groups, *kernel)")
    n = w.ndim - 2
    per_dim_stride = arguments.as_tuple(op, "stride", stride, n)
    per_dim_dilation = arguments.as_tuple(op, "dilation", dilation, n)
    per_dim_padding = arguments.as_tuple(op, "padding", padding, n, minimum=0)
    per_dim_output_padding = arguments.as_tuple(op, "output_padding", output_padding, n, minimum=0)
    groups = arguments.as_int(op, "groups", groups, 1)
    in_channels = x.shape[1]
    if w.shape[0] != in_channels:
        raise ValueError(
            f"{op}: channel mismatch: x has in_channels={in_channels} but w.shape={tuple(w.shape)} has "
            f"w.shape[0]={w.shape[0]} (w is (C_in, C_out/groups, *kernel))"
        )
    arguments.groups_divide(op, groups, "in_channels", in_channels, "x", x.shape)
    arguments.bias_shape(op, b, groups * w.shape[1])
    for axis, (extra, s, d) in enumerate(zip(per_dim_output_padding, per_dim_stride, per_dim_dilation)):
        if extra >= max(s, d):
            raise ValueError(
                f"{op}: output_padding={output_padding!r} must be smaller than max(stride, dilation) in each "
                f"spatial dim, got {extra} >= max({s}, {d}) along spatial dim {axis}"
            )
    out_spatial = []
    for axis, (i, k, s, p, d, extra) in enumerate(
        zip(x.shape[2:], w.shape[2:], per_dim_stride, per_dim_padding, per_dim_dilation, per_dim_output_padding)
    ):
        size = conv_transpose_output_size(i, k, s, p, d, extra)
        if size < 1:
            raise ValueError(
                f"{op}: output would be empty along spatial dim {axis}: (in - 1) * stride + dilated kernel "
                f"- 2 * padding + output_padding = ({i} - 1) * {s} + {dilated_size(k, d)} - 2 * {p} + {extra} "
                f"= {size} < 1"
            )
        out_spatial.append(size)
    geometry = ConvGeometry(
        per_dim_stride,
        tuple(conv_transpose_padding(p, extra) for p, extra in zip(per_dim_padding, per_dim_output_padding)),
        per_dim_dilation,
        groups,
        arguments.dimension_numbers_for(op, x.shape, w.shape, None),
    )
    return x, w, b, geometry, tuple(out_spatial)

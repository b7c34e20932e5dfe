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

import dataclasses
from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from convgrad.ops import arguments, conv_textbook
from convgrad.ops.geometry import ConvGeometry, conv_transpose_output_size, conv_transpose_padding, dilated_extent
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
    dimension_numbers: tuple[str, str, str] | None = None,
    output_size: tuple[int, ...] | None = None,
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

    Zero-size arrays are valid: an empty batch or no channels give lax's
    shapes (the bias, or empty) and zero gradients; an input with no samples
    along a dim gives the ``d (k - 1) - 2 p + output_padding`` samples of
    ``lax.conv_transpose``'s dilated, padded empty input (zeros plus the bias).

    Args:
      x: input, ``(N, C, *in)`` in the default layout, or ``(C, *in)`` for one
        example (one axis fewer than ``w``; the result is unbatched too).
        Floating dtype.
      w: kernel, ``(C, O/G, *k)`` as in PyTorch; its rank sets the number of
        spatial dims (1, 2 or 3). Same dtype as ``x``.
      b: optional bias, ``(O,)``.
      stride: ``s``, an int or one per spatial dim.
      padding: ``p >= 0``, cropped from both sides; an int or one per spatial dim.
      output_padding: extra samples at the high end of each spatial dim, an int
        or one per spatial dim, each ``< max(s, d)`` (PyTorch's rule).
      dilation: ``d``, the spacing of kernel taps; an int or one per spatial dim.
      groups: ``G``; must divide ``C``. ``O = G * w.shape[1]``.
      dimension_numbers: ``None`` for channel-first (``("NCHW", "IOHW",
        "NCHW")`` in 2-d: ``I`` marks ``w``'s axis of this op's input channels
        ``C``, ``O`` its axis of output channels per group), or three lax
        layout strings for input, kernel and output, e.g. ``("NHWC", "HWIO",
        "NHWC")`` (Flax's ``ConvTranspose`` kernel, ``(kh, kw, C, O/G)``). An
        unbatched ``x`` is laid out as the input string without its ``N``.
      output_size: the spatial size of ``y`` to produce (``n`` ints, or the
        whole output shape), as in PyTorch's
        ``ConvTranspose*d.forward(x, output_size=...)``: it picks
        ``output_padding = size - ((in - 1) s - 2 p + d (k - 1) + 1)``, which
        must lie in ``[0, s)``. Give it or ``output_padding``, not both.

    Returns:
      ``y``, ``(N, O, *out)`` in the output layout (``(O, *out)`` for an
      unbatched ``x``), with
      ``out = (in - 1) s - 2 p + d (k - 1) + output_padding + 1`` per spatial dim
      (0 where that is below 0 but the padded, zero-inserted input is not, as in lax).

    Raises:
      TypeError: an array argument is not a floating array, the dtypes differ,
        or an int argument is not an int.
      ValueError: ``w`` has fewer than 1 or more than 3 spatial dims, ``x``
        has neither ``w``'s rank nor one less, a kernel spatial size is 0, the
        channels do not match ``w`` or ``groups``, ``b`` is not ``(O,)``; a
        stride or dilation that is not positive, a negative padding or output
        padding, ``output_padding >= max(s, d)``; bad ``dimension_numbers``;
        an ``output_size`` of the wrong length or out of reach (the message
        gives the reachable range), or given with ``output_padding``; an
        output size below 0, or an output larger than this process's memory.

    Examples:
      The seed question (a 3x7x7 input and one 3x3x3 filter at stride 2 give
      1x3x3; the transposed convolution maps a 1x3x3 map back to 3x7x7):

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

      In 1-d, each input sample scatters a scaled copy of the kernel ``s``
      samples apart; ``output_size`` picks the output padding:

      >>> conv_transpose(jnp.array([[[1.0, 10.0]]]), jnp.array([[[1.0, 2.0, 3.0]]]), stride=2)
      Array([[[ 1.,  2., 13., 20., 30.]]], dtype=float32)
      >>> conv_transpose(jnp.ones((1, 1, 2)), jnp.ones((1, 1, 3)), stride=2, output_size=(6,)).shape
      (1, 1, 6)

    References:
      ``torch.nn.ConvTranspose1d/2d/3d``
      (https://pytorch.org/docs/stable/generated/torch.nn.ConvTranspose2d.html);
      Dumoulin & Visin, "A guide to convolution arithmetic for deep learning" (2016).
    """
    x, w, b, geometry, out_spatial, unbatched_axis = conv_transpose_arguments(
        x, w, b, stride, padding, output_padding, dilation, groups, dimension_numbers, output_size
    )
    y = _conv_transpose(geometry, out_spatial, x, w, b)
    return y if unbatched_axis is None else jnp.squeeze(y, unbatched_axis)


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
    ``dx`` is its forward pass on ``g`` and ``dw`` its weight gradient. With no
    terms (a zero-size ``x``, ``w`` or ``g``) every sum is empty: zero gradients.
    """
    x, w, b = residuals
    b_grad = (
        None
        if b is None
        else like_primal(conv_textbook.conv_bias_grad(g, output_geometry(geometry)).astype(b.dtype), b)
    )
    if conv_textbook.has_no_terms(x, w, g):
        return jnp.zeros_like(x), jnp.zeros_like(w), b_grad
    x_grad = conv_textbook.conv_forward(g, w, None, geometry)
    w_grad = conv_textbook.conv_weight_grad(g, x, geometry, geometry.kernel_spatial(w.shape))
    return like_primal(x_grad, x), like_primal(w_grad, w), b_grad


_conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


def conv_transpose_forward(
    x: jax.Array, w: jax.Array, b: jax.Array | None, geometry: ConvGeometry, out_spatial: tuple[int, ...]
) -> jax.Array:
    """``y = x *^T w + b``: conv's input gradient at cotangent ``x`` (zero insertion, padding, flipped kernel).

    With no terms (a zero-size ``x`` or ``w``, or an empty output) ``y`` is the bias alone, or empty.
    """
    dn = geometry.dn
    if conv_textbook.has_no_terms(x, w) or 0 in out_spatial:
        shape = [0] * x.ndim
        canonical = (x.shape[dn.out_spec[0]], w.shape[dn.rhs_spec[1]] * geometry.groups, *out_spatial)
        for axis, size in zip(dn.lhs_spec, canonical):
            shape[axis] = size
        y = jnp.zeros(shape, x.dtype)
    else:
        y = conv_textbook.conv_input_grad(x, w, geometry, out_spatial)
    if b is None:
        return y
    return y + b.reshape([-1 if axis == dn.lhs_spec[1] else 1 for axis in range(y.ndim)])


def output_geometry(geometry: ConvGeometry) -> ConvGeometry:
    """``geometry`` with input and output layouts exchanged: this op's own view, whose output is its ``y``.

    The bias gradient sums ``g`` over every axis but the channel axis of ``y``, which is
    the *input* layout of the convolution this op transposes.
    """
    dn = geometry.dn
    return dataclasses.replace(geometry, dn=lax.ConvDimensionNumbers(dn.out_spec, dn.rhs_spec, dn.lhs_spec))


def zero_insert(x: ArrayLike, stride: int | tuple[int, ...]) -> jax.Array:
    """``x_up[n, c, *(i s)] = x[n, c, *i]``: ``s - 1`` zeros between samples along each spatial dim.

    Channel-first ``(N, C, *in)`` -> ``(N, C, *((in - 1) s + 1))``; no zeros
    after the last sample (an axis with no samples stays empty). The
    intermediate map of :func:`conv_transpose` (lax does the same inside the
    convolution, as ``lhs_dilation``). Linear; JAX transposes its ``lax.pad``
    (a strided slice), so it has no VJP of its own.

    Args:
      x: ``(N, C, *in)``, any dtype, 1 or more spatial dims.
      stride: ``s``, an int or one per spatial dim, positive.

    Returns:
      ``x_up``, ``(N, C, *((in - 1) s + 1))``, in ``x``'s dtype.

    Raises:
      ValueError: ``x`` has fewer than 3 dims, or ``stride`` is not positive or
        has the wrong length.
      TypeError: ``stride`` is not an int.

    Examples:
      >>> import jax.numpy as jnp
      >>> from convgrad import zero_insert
      >>> zero_insert(jnp.array([[[1.0, 2.0, 3.0]]]), 2)
      Array([[[1., 0., 2., 0., 3.]]], dtype=float32)

    References:
      Dumoulin & Visin, "A guide to convolution arithmetic for deep learning"
      (2016), section 4.5; ``lhs_dilation`` in ``jax.lax.conv_general_dilated``.
    """
    x = jnp.asarray(x)
    if x.ndim < 3:
        raise ValueError(f"zero_insert: x must be (N, C, *spatial) with 1 or more spatial dims, got x.shape={x.shape}")
    stride = arguments.as_tuple("zero_insert", "stride", stride, x.ndim - 2)
    return lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (0, 0, 0), *((0, 0, s - 1) for s in stride)])


def conv_transpose_arguments(
    x, w, b, stride, padding, output_padding, dilation, groups, dimension_numbers, output_size
):
    """Checked arrays, the :class:`ConvGeometry` of the convolution this op transposes, the output's spatial size,
    and the batch axis of the output when ``x`` came unbatched (else ``None``)."""
    op = "conv_transpose"
    x, w, b = arguments.conv_operands(op, x, w, b, "(C_in, C_out/groups, *kernel)", unbatched=True)
    n = w.ndim - 2
    spatial = "DHW"[3 - n :]
    layouts = ("NC" + spatial, "IO" + spatial, "NC" + spatial) if dimension_numbers is None else dimension_numbers
    x, unbatched_axis = arguments.batched(x, w.ndim, layouts)
    user = arguments.dimension_numbers_for(op, x.shape, w.shape, layouts)
    # the convolution this op transposes reads this op's output and writes its input; its kernel's out-channel
    # axis is w's "I" axis (this op's input channels) and its in-channel axis w's "O" axis
    dn = lax.ConvDimensionNumbers(
        user.out_spec, (user.rhs_spec[1], user.rhs_spec[0], *user.rhs_spec[2:]), user.lhs_spec
    )
    per_dim_stride = arguments.as_tuple(op, "stride", stride, n)
    per_dim_dilation = arguments.as_tuple(op, "dilation", dilation, n)
    per_dim_padding = arguments.as_tuple(op, "padding", padding, n, minimum=0)
    per_dim_output_padding = arguments.as_tuple(op, "output_padding", output_padding, n, minimum=0)
    groups = arguments.as_int(op, "groups", groups, 1)
    in_channels, kernel_in = x.shape[user.lhs_spec[1]], w.shape[user.rhs_spec[1]]
    if kernel_in != in_channels:
        raise ValueError(
            f"{op}: channel mismatch: x has in_channels={in_channels} but w.shape={tuple(w.shape)} has "
            f"{kernel_in} input channels (w is (C_in, C_out/groups, *kernel) in its layout)"
        )
    arguments.groups_divide(op, groups, "in_channels", in_channels, "x", x.shape)
    out_channels = groups * w.shape[user.rhs_spec[0]]
    arguments.bias_shape(op, b, out_channels)
    in_spatial = tuple(x.shape[a] for a in user.lhs_spec[2:])
    kernel_spatial = tuple(w.shape[a] for a in user.rhs_spec[2:])
    arguments.kernel_sizes_positive(op, w.shape, kernel_spatial)
    if output_size is not None:
        if any(per_dim_output_padding):
            raise ValueError(
                f"{op}: give output_padding or output_size, not both; got output_padding={output_padding!r} "
                f"and output_size={output_size!r}"
            )
        per_dim_output_padding = output_padding_for(
            op,
            output_size,
            x.ndim,
            unbatched_axis,
            user.out_spec,
            in_spatial,
            kernel_spatial,
            per_dim_stride,
            per_dim_padding,
            per_dim_dilation,
        )
    for axis, (extra, s, d) in enumerate(zip(per_dim_output_padding, per_dim_stride, per_dim_dilation)):
        if extra >= max(s, d):
            raise ValueError(
                f"{op}: output_padding={output_padding!r} must be smaller than max(stride, dilation) in each "
                f"spatial dim, got {extra} >= max({s}, {d}) along spatial dim {axis}"
            )
    out_spatial = []
    for axis, (i, k, s, p, d, extra) in enumerate(
        zip(in_spatial, kernel_spatial, per_dim_stride, per_dim_padding, per_dim_dilation, per_dim_output_padding)
    ):
        extent = dilated_extent(k, d)
        padded = dilated_extent(i, s) + 2 * (extent - 1 - p) + extra  # lax's dilated, padded input
        if padded < 0:
            raise ValueError(
                f"{op}: padding={padding!r} crops more than the output holds along spatial dim {axis}: the "
                f"zero-inserted input padded by dilated kernel - 1 - padding each side (and output_padding) "
                f"would have ({i} - 1) * {s} + 1 + 2 * ({extent} - 1 - {p}) + {extra} = {padded} < 0 samples"
            )
        out_spatial.append(max(0, padded - extent + 1))
    geometry = ConvGeometry(
        per_dim_stride,
        tuple(conv_transpose_padding(p, extra) for p, extra in zip(per_dim_padding, per_dim_output_padding)),
        per_dim_dilation,
        groups,
        dn,
    )
    out_shape = [0] * x.ndim
    for axis, size in zip(user.out_spec, (x.shape[user.lhs_spec[0]], out_channels, *out_spatial)):
        out_shape[axis] = size
    arguments.fits_in_memory(
        op,
        "output",
        out_shape,
        x.dtype,
        f"stride={stride!r} and dilation={dilation!r} on an input of size {in_spatial}",
    )
    return x, w, b, geometry, tuple(out_spatial), unbatched_axis


def output_padding_for(
    op, output_size, ndim, unbatched_axis, out_spec, in_spatial, kernel_spatial, stride, padding, dilation
):
    """PyTorch's ``_output_padding``: ``size - min_size`` per spatial dim, with ``size`` in ``[min, min + s - 1]``."""
    n = len(in_spatial)
    sizes = output_size
    whole = ndim if unbatched_axis is None else ndim - 1  # the rank of the output the caller gets
    if isinstance(sizes, Sequence) and not isinstance(sizes, str) and len(sizes) == whole != n:
        if unbatched_axis is not None:  # an unbatched output's whole shape: put a batch entry back
            sizes = [*sizes[:unbatched_axis], 0, *sizes[unbatched_axis:]]
        sizes = [sizes[a] for a in out_spec[2:]]  # the whole output shape: its spatial entries
    try:
        sizes = arguments.as_tuple(op, "output_size", list(sizes), n, minimum=0)
    except TypeError as error:
        raise TypeError(
            f"{op}: output_size must be {n} int{'s' if n != 1 else ''} (or the whole output shape), got {output_size!r}"
        ) from error
    except ValueError as error:
        raise ValueError(
            f"{op}: output_size must be {n} int{'s' if n != 1 else ''} >= 0 (or the whole output shape), "
            f"got output_size={output_size!r}"
        ) from error
    minimum = [
        conv_transpose_output_size(i, k, s, p, d, 0)
        for i, k, s, p, d in zip(in_spatial, kernel_spatial, stride, padding, dilation)
    ]
    maximum = [m + s - 1 for m, s in zip(minimum, stride)]
    if any(not lo <= size <= hi for size, lo, hi in zip(sizes, minimum, maximum)):
        raise ValueError(
            f"{op}: requested output_size={tuple(sizes)}, but valid sizes range from {tuple(minimum)} to "
            f"{tuple(maximum)} (for an input of spatial size {tuple(in_spatial)})"
        )
    return tuple(size - m for size, m in zip(sizes, minimum))

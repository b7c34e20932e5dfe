"""lax's two convolutions with hand-derived VJPs, with exactly ``jax.lax``'s signatures (:mod:`convgrad.lax`).

Read top to bottom: the public ``conv_general_dilated`` (the derivation for lax's extra
arguments, ``lhs_dilation`` and ``batch_group_count``, in its docstring), its forward (what it
saves), its backward (the derivation as code), ``defvjp``; then ``conv_transpose``, which is
lax's own wrapper around it; then the argument checks. The three convolutions are
:mod:`convgrad.ops.conv_textbook`'s, which take every lax argument, or on CPU, for the
arguments PyTorch has too, the faster formulations that :func:`convgrad.conv` uses
(:mod:`convgrad.ops.conv_formulations`).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from convgrad.ops import arguments, conv_textbook
from convgrad.ops.conv import conv_forward_of, padded_size_not_negative
from convgrad.ops.conv_formulations import FORMULATIONS
from convgrad.ops.geometry import (
    ConvGeometry,
    Pair,
    dilated_extent,
    lax_conv_transpose_padding,
    same_lower_padding,
    same_padding,
)
from convgrad.ops.replicas import like_primal

LAX_PADDINGS = ("SAME", "SAME_LOWER", "VALID")


def conv_general_dilated(
    lhs: ArrayLike,
    rhs: ArrayLike,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: lax.ConvDimensionNumbers | tuple[str, str, str] | None = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
    out_sharding: Any = None,
) -> jax.Array:
    r"""``jax.lax.conv_general_dilated``, argument for argument, with a hand-derived VJP.

    A drop-in for Flax: ``nnx.Conv(..., conv_general_dilated=convgrad.lax.conv_general_dilated)``
    (or ``linen.Conv``) trains on this VJP. Per spatial dim (1-d shown; more
    dims repeat each spatial index), with ``a = lhs_dilation``,
    ``s = window_strides``, ``d = rhs_dilation``, padding ``(lo, hi)``,
    ``G = feature_group_count``, ``B = batch_group_count``, ``lhs (N, C, H)``,
    ``rhs (O, C/G, K)`` and ``y (N/B, O, H')`` in lax's canonical order: the
    input is dilated, ``x_up[n, c, h a] = lhs[n, c, h]`` (``a - 1`` zeros between
    samples), then padded, ``x_pad = x_up`` with ``lo``/``hi`` zeros (negative
    values crop), and::

        y[n', o, i] = sum_{c', k} x_pad[b(o) N' + n', g(o) C/G + c', i s + k d] rhs[o, c', k]

    with ``N' = N/B``, the feature group ``g(o) = o // (O/G)`` and the batch
    group ``b(o) = o // (O/B)`` (lax allows at most one of ``G``, ``B`` above
    1): with ``B`` batch groups the batch splits into ``B`` contiguous blocks and
    output channel ``o`` reads only block ``b(o)``. ``H' = max(0, (dilated(H, a)
    + lo + hi - dilated(K, d)) // s + 1)``, ``dilated(n, r) = max(0, (n - 1) r + 1)``.

    **Gradients.** For a cotangent ``g`` shaped like ``y``, each product above
    sends ``g[n', o, i]`` to both factors:

    * ``lhs``: ``dx_pad[n, c, p] = sum_{o, i, k : i s + k d = p} g[n', o, i] rhs[o, c', k]``
      is conv's input gradient of the dilated input (zero-inserted cotangent,
      flipped, channel-swapped kernel), and only every ``a``-th sample of
      ``x_up`` is an input sample: ``dlhs[n, c, h] = dx_pad[n, c, lo + h a]``.
      One convolution, with window stride ``a`` (lax's transpose rule does the
      same). With ``B`` batch groups, ``lhs[b N' + n', c]`` meets only the
      output channels of group ``b``: a convolution with ``B`` feature groups
      whose kernel is flipped and swapped with ``B`` groups, ``(O, C) -> (B C,
      O/B)``; its output channel ``b C + c`` is the gradient of batch
      ``b N' + n'``, channel ``c``, and is moved there.
    * ``rhs``: ``drhs[o, c', k] = sum_{n', i} x_pad[b(o) N' + n', g(o) C/G + c', i s + k d] g[n', o, i]``,
      the input (still dilated by ``a``) correlated with the cotangent dilated
      by ``s``, windows stepping by ``d``, the batch contracted. With ``G``
      feature groups the input's channel groups pair with the output's:
      ``batch_group_count = G`` of that convolution. With ``B`` batch groups the
      contracted index ``n = b N' + n'`` splits by the group of ``o``:
      ``feature_group_count = B`` of that convolution.

    ``precision`` and ``preferred_element_type`` go to every convolution of the
    forward and the backward; the backward casts the other operand to the
    cotangent's dtype and its results to the primal dtypes, as lax's transpose
    rules do. On CPU, with none of lax's extra arguments (no ``lhs_dilation``,
    ``batch_group_count=1``, default precision and result type) the products
    use :func:`convgrad.conv`'s formulations (``formulation="auto"``).

    Args:
      lhs: input, rank ``n + 2``, real floating dtype.
      rhs: kernel, rank ``n + 2``, the same dtype.
      window_strides: ``n`` positive ints.
      padding: ``"SAME"``, ``"SAME_LOWER"``, ``"VALID"`` (any case), or ``n``
        ``(low, high)`` int pairs, negative values cropping. A string needs
        ``lhs_dilation`` of ones (as in lax).
      lhs_dilation: ``None`` or ``n`` positive ints.
      rhs_dilation: ``None`` or ``n`` positive ints.
      dimension_numbers: ``None`` (``NC...``, ``OI...``, ``NC...``), a
        ``lax.ConvDimensionNumbers`` or three layout strings.
      feature_group_count: ``G``, dividing the input features and the kernel's
        output features; the kernel's input features are ``C/G``.
      batch_group_count: ``B``, dividing the batch and the kernel's output features.
      precision: ``None``, a ``lax.Precision``, a precision string, or a pair of them.
      preferred_element_type: ``None`` or a floating dtype no narrower than the inputs'.
      out_sharding: ``None`` only (convgrad's VJPs follow their operands' shardings).

    Returns:
      ``y``, laid out as the output spec says, in ``preferred_element_type`` or
      the inputs' dtype.

    Raises:
      TypeError: a non-floating or complex operand, mismatched dtypes, a
        non-int stride, dilation or group count, bad ``precision``,
        ``preferred_element_type`` not floating or narrower than the inputs.
      ValueError: ranks that differ or are below 2; bad ``dimension_numbers``;
        strides, dilations or padding of the wrong length or sign; a string
        padding with ``lhs_dilation``; group counts that do not divide (or both
        above 1); channel mismatch; a kernel spatial size of 0; a padding that
        crops more than the input holds; ``out_sharding`` given; an output
        larger than memory.

    Examples:
      A 1-d input of 3 samples dilated by 2 (``[1, 0, 2, 0, 3]``), 2-tap kernel
      of ones; the input gradient reads the dilated gradient every 2nd sample:

      >>> import jax, jax.numpy as jnp
      >>> from convgrad.lax import conv_general_dilated
      >>> x, w = jnp.array([[[1.0, 2.0, 3.0]]]), jnp.ones((1, 1, 2))
      >>> conv_general_dilated(x, w, (1,), [(0, 0)], lhs_dilation=(2,))
      Array([[[1., 2., 2., 3.]]], dtype=float32)
      >>> jax.vjp(lambda x: conv_general_dilated(x, w, (1,), [(0, 0)], lhs_dilation=(2,)), x)[1](jnp.ones((1, 1, 4)))[0]
      Array([[[1., 2., 1.]]], dtype=float32)

      Two batch groups: output channel 0 reads example 0, channel 1 example 1:

      >>> x2 = jnp.array([[[1.0, 2.0]], [[10.0, 20.0]]])           # (N=2, C=1, 2)
      >>> conv_general_dilated(x2, jnp.ones((2, 1, 2)), (1,), "VALID", batch_group_count=2)
      Array([[[ 3.],
              [30.]]], dtype=float32)

    References:
      ``jax.lax.conv_general_dilated``
      (https://docs.jax.dev/en/latest/_autosummary/jax.lax.conv_general_dilated.html) and XLA's
      ConvWithGeneralDimensions (https://openxla.org/xla/operation_semantics#conv_convolution).
    """
    geometry, lhs, rhs = conv_general_arguments(
        "lax.conv_general_dilated",
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation,
        rhs_dilation,
        dimension_numbers,
        feature_group_count,
        batch_group_count,
        precision,
        preferred_element_type,
        out_sharding,
    )
    return _conv_general_dilated(geometry, lhs, rhs)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _conv_general_dilated(geometry: ConvGeometry, lhs: jax.Array, rhs: jax.Array) -> jax.Array:
    return conv_forward_of(geometry, lhs, rhs, None)


def _conv_general_dilated_fwd(geometry, lhs, rhs):
    """Save ``lhs`` for the kernel's gradient and ``rhs`` for the input's."""
    return conv_forward_of(geometry, lhs, rhs, None), (lhs, rhs)


def _conv_general_dilated_bwd(geometry, residuals, g):
    """``(dlhs, drhs)``: the two formulas of the docstring, each summed over the devices that share its argument.

    With no terms (a zero-size ``lhs``, ``rhs`` or ``g``) every sum is empty: zero gradients.
    """
    lhs, rhs = residuals
    if conv_textbook.has_no_terms(lhs, rhs, g):
        return jnp.zeros_like(lhs), jnp.zeros_like(rhs)
    formulation = FORMULATIONS[geometry.formulation]
    lhs_grad = formulation.input_grad(g, rhs, geometry, geometry.in_spatial(lhs.shape))
    rhs_grad = formulation.weight_grad(lhs, g, geometry, geometry.kernel_spatial(rhs.shape))
    return like_primal(lhs_grad.astype(lhs.dtype), lhs), like_primal(rhs_grad.astype(rhs.dtype), rhs)


_conv_general_dilated.defvjp(_conv_general_dilated_fwd, _conv_general_dilated_bwd)


def conv_transpose(
    lhs: ArrayLike,
    rhs: ArrayLike,
    strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: lax.ConvDimensionNumbers | tuple[str, str, str] | None = None,
    transpose_kernel: bool = False,
    precision: Any = None,
    preferred_element_type: Any = None,
    use_consistent_padding: bool = False,
) -> jax.Array:
    r"""``jax.lax.conv_transpose``, argument for argument: a convolution of the ``s``-dilated input.

    As in lax, this is :func:`conv_general_dilated` with ``lhs_dilation =
    strides``, window strides 1 and the padding below, so its VJP is that
    op's hand-derived VJP (the kernel flip of ``transpose_kernel`` is a
    permutation of ``rhs`` in front of it). Per spatial dim, with ``k =
    dilated(K, d)`` the dilated kernel extent, the padding of the dilated input is

    * ``"SAME"``: ``total = k + s - 2``, ``lo = k - 1`` if ``s > k - 1`` else ``ceil(total / 2)``;
    * ``"VALID"``: ``total = k + s - 2 + max(k - s, 0)``, ``lo = k - 1``;
    * ``(p_lo, p_hi)`` with ``use_consistent_padding=True``, the forward
      convolution's padding (PyTorch's meaning): ``(k - 1 - p_lo, k - 1 - p_hi)``;
    * ``(lo, hi)`` pairs otherwise: used as given;

    and ``hi = total - lo``. ``y[n, o, j] = sum_{c, kk} x_pad[n, c, j + kk d]
    rhs[o, c, kk]`` over the zero-inserted, padded input. With
    ``transpose_kernel=True`` the kernel is flipped in space and its two
    channel axes swapped first (Keras's ``Conv2DTranspose``, the gradient of a
    convolution); lax's default does neither.

    Args:
      lhs: input, rank ``n + 2``, real floating dtype.
      rhs: kernel, rank ``n + 2``, the same dtype.
      strides: ``n`` positive ints: the input dilation.
      padding: ``"SAME"``, ``"VALID"`` or ``n`` ``(lo, hi)`` int pairs (see above).
      rhs_dilation: ``None`` or ``n`` positive ints.
      dimension_numbers: ``None`` (lax's default: ``("NHWC", "HWIO", "NHWC")``
        in 2-d, the same pattern for 0 to 3 spatial dims) or as in
        :func:`conv_general_dilated`.
      transpose_kernel: flip the kernel's spatial axes and swap its ``I``/``O`` axes.
      precision: as in :func:`conv_general_dilated`.
      preferred_element_type: as in :func:`conv_general_dilated`.
      use_consistent_padding: read int pairs as the forward convolution's padding.

    Returns:
      ``y``, laid out as the output spec says.

    Raises:
      TypeError: as :func:`conv_general_dilated`; ``transpose_kernel`` or
        ``use_consistent_padding`` not a bool.
      ValueError: as :func:`conv_general_dilated`; no default
        ``dimension_numbers`` for 4 or more spatial dims (lax has none).

    Examples:
      A stride-2 transposed convolution of ``[1, 10]`` with the kernel
      ``[1, 2, 3]`` (``"VALID"``: pad the dilated ``[1, 0, 10]`` by 2 each side),
      and the same with the kernel transposed (flipped):

      >>> import jax.numpy as jnp
      >>> from convgrad.lax import conv_transpose
      >>> x, w = jnp.array([[[1.0], [10.0]]]), jnp.array([[[1.0]], [[2.0]], [[3.0]]])   # NHC, HIO
      >>> conv_transpose(x, w, (2,), "VALID")[0, :, 0]
      Array([ 3.,  2., 31., 20., 10.], dtype=float32)
      >>> conv_transpose(x, w, (2,), "VALID", transpose_kernel=True)[0, :, 0]
      Array([ 1.,  2., 13., 20., 30.], dtype=float32)

    References:
      ``jax.lax.conv_transpose``
      (https://docs.jax.dev/en/latest/_autosummary/jax.lax.conv_transpose.html).
    """
    op = "lax.conv_transpose"
    lhs = arguments.as_float_array(op, "lhs", lhs)
    rhs = arguments.as_float_array(op, "rhs", rhs)
    if lhs.ndim != rhs.ndim or lhs.ndim < 2:
        raise ValueError(
            f"{op}: lhs and rhs must have one rank of at least 2, got lhs.shape={tuple(lhs.shape)}, "
            f"rhs.shape={tuple(rhs.shape)}"
        )
    n = lhs.ndim - 2
    for name, flag in (("transpose_kernel", transpose_kernel), ("use_consistent_padding", use_consistent_padding)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{op}: {name} must be a bool, got {name}={flag!r}")
    if dimension_numbers is None:
        if n > 3:
            raise ValueError(f"{op}: no default dimension_numbers for {n} spatial dims (lax has none); give them")
        spatial = "HWD"[:n]
        dimension_numbers = ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C")
    dn = lax_dimension_numbers(op, lhs.shape, rhs.shape, dimension_numbers)
    strides = int_sequence(op, "strides", strides, n, 1)
    rhs_dilation = (1,) * n if rhs_dilation is None else int_sequence(op, "rhs_dilation", rhs_dilation, n, 1)
    kernel_spatial = tuple(rhs.shape[a] for a in dn.rhs_spec[2:])
    if use_consistent_padding or (isinstance(padding, str) and padding in ("SAME", "VALID")):
        per_dim = [padding] * n if isinstance(padding, str) else padding_pairs(op, padding, n)
        pads = tuple(
            lax_conv_transpose_padding(dilated_extent(k, r), s, p)
            for k, r, s, p in zip(kernel_spatial, rhs_dilation, strides, per_dim)
        )
    else:
        pads = padding
    if transpose_kernel:
        rhs = jnp.swapaxes(lax.rev(rhs, tuple(dn.rhs_spec[2:])), dn.rhs_spec[0], dn.rhs_spec[1])
    geometry, lhs, rhs = conv_general_arguments(
        op, lhs, rhs, (1,) * n, pads, strides, rhs_dilation, dn, 1, 1, precision, preferred_element_type, None
    )
    return _conv_general_dilated(geometry, lhs, rhs)


def conv_general_arguments(
    op,
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation,
    rhs_dilation,
    dimension_numbers,
    feature_group_count,
    batch_group_count,
    precision,
    preferred_element_type,
    out_sharding,
) -> tuple[ConvGeometry, jax.Array, jax.Array]:
    """The :class:`ConvGeometry` of a lax convolution and its checked operands, by lax's rules."""
    lhs = arguments.as_float_array(op, "lhs", lhs)
    rhs = arguments.as_float_array(op, "rhs", rhs)
    arguments.same_dtype(op, lhs=lhs, rhs=rhs)
    if lhs.ndim != rhs.ndim or lhs.ndim < 2:
        raise ValueError(
            f"{op}: lhs and rhs must have one rank of at least 2 (batch, feature and the spatial dims), "
            f"got lhs.shape={tuple(lhs.shape)}, rhs.shape={tuple(rhs.shape)}"
        )
    n = lhs.ndim - 2
    dn = lax_dimension_numbers(op, lhs.shape, rhs.shape, dimension_numbers)
    window_strides = int_sequence(op, "window_strides", window_strides, n, 1)
    lhs_dilation = (1,) * n if lhs_dilation is None else int_sequence(op, "lhs_dilation", lhs_dilation, n, 1)
    rhs_dilation = (1,) * n if rhs_dilation is None else int_sequence(op, "rhs_dilation", rhs_dilation, n, 1)
    feature_groups = arguments.as_int(op, "feature_group_count", feature_group_count, 1)
    batch_groups = arguments.as_int(op, "batch_group_count", batch_group_count, 1)
    groups_fit(op, lhs.shape, rhs.shape, dn, feature_groups, batch_groups)
    in_spatial = tuple(lhs.shape[a] for a in dn.lhs_spec[2:])
    kernel_spatial = tuple(rhs.shape[a] for a in dn.rhs_spec[2:])
    arguments.kernel_sizes_positive(op, rhs.shape, kernel_spatial)
    if isinstance(padding, str):
        if any(a != 1 for a in lhs_dilation):
            raise ValueError(
                f"{op}: a string padding={padding!r} is not defined with lhs_dilation={lhs_dilation} (lax does not "
                "implement it either); give (lo, hi) pairs, or use conv_transpose"
            )
        if padding.upper() not in LAX_PADDINGS:
            raise ValueError(f"{op}: padding={padding!r} is not one of {list(LAX_PADDINGS)} or {n} (lo, hi) pairs")
        rule = {"SAME": same_padding, "SAME_LOWER": same_lower_padding}.get(padding.upper())
        pairs = (
            ((0, 0),) * n
            if rule is None
            else tuple(rule(i, k, s, d) for i, k, s, d in zip(in_spatial, kernel_spatial, window_strides, rhs_dilation))
        )
    else:
        pairs = padding_pairs(op, padding, n)
    padded_size_not_negative(op, padding, in_spatial, pairs, lhs_dilation)
    if out_sharding is not None:
        raise ValueError(
            f"{op}: out_sharding={out_sharding!r} is not supported: convgrad's VJPs follow their operands' "
            "shardings (shard the operands, or constrain the result with jax.lax.with_sharding_constraint)"
        )
    geometry = ConvGeometry(
        window_strides,
        pairs,
        rhs_dilation,
        feature_groups,
        dn,
        lhs_dilation=lhs_dilation,
        batch_groups=batch_groups,
        precision=as_precision(op, precision),
        preferred_element_type=as_result_type(op, preferred_element_type, lhs.dtype),
    )
    arguments.fits_in_memory(
        op,
        "output",
        geometry.output_shape(lhs.shape, rhs.shape),
        lhs.dtype if geometry.preferred_element_type is None else geometry.preferred_element_type,
        f"padding={padding!r} with lhs_dilation={lhs_dilation} on an input of spatial size {in_spatial}",
    )
    return geometry, lhs, rhs


def lax_dimension_numbers(op: str, lhs_shape, rhs_shape, dimension_numbers) -> lax.ConvDimensionNumbers:
    """lax's ``ConvDimensionNumbers`` from ``None`` (``NC...``, ``OI...``, ``NC...``), itself, or three strings."""
    ndim = len(lhs_shape)
    if dimension_numbers is None:
        iota = tuple(range(ndim))
        return lax.ConvDimensionNumbers(iota, iota, iota)
    if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
        specs = tuple(tuple(operator.index(a) for a in spec) for spec in dimension_numbers)
        if any(sorted(spec) != list(range(ndim)) for spec in specs):
            raise ValueError(
                f"{op}: dimension_numbers={dimension_numbers!r} must hold a permutation of the {ndim} axes in each "
                f"spec (lhs.shape={tuple(lhs_shape)})"
            )
        return lax.ConvDimensionNumbers(*specs)
    return arguments.dimension_numbers_for(op, lhs_shape, rhs_shape, dimension_numbers)


def int_sequence(op: str, name: str, value: object, n: int, minimum: int) -> tuple[int, ...]:
    """A sequence of ``n`` ints, each at least ``minimum`` (lax takes no bare int here)."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise TypeError(f"{op}: {name} must be a sequence of {n} ints, got {name}={value!r}")
    return arguments.as_tuple(op, name, tuple(value), n, minimum)


def padding_pairs(op: str, padding: object, n: int) -> tuple[Pair, ...]:
    """``n`` ``(lo, hi)`` int pairs, any sign (lax takes no bare int here)."""
    message = f"{op}: padding must be a string or a sequence of {n} (lo, hi) int pairs, got padding={padding!r}"
    if not isinstance(padding, Sequence) or len(padding) != n:
        raise ValueError(message)
    if any(not isinstance(p, Sequence) or isinstance(p, str) or len(p) != 2 for p in padding):
        raise ValueError(message)
    return arguments.as_signed_padding(op, padding, n, ())


def groups_fit(op: str, lhs_shape, rhs_shape, dn, feature_groups: int, batch_groups: int) -> None:
    """lax's group rules: ``G`` divides the input features and the kernel's output features, the kernel reads
    ``C/G`` features; ``B`` divides the batch and the kernel's output features; not both above 1."""
    features, batch = lhs_shape[dn.lhs_spec[1]], lhs_shape[dn.lhs_spec[0]]
    kernel_out, kernel_in = rhs_shape[dn.rhs_spec[0]], rhs_shape[dn.rhs_spec[1]]
    if feature_groups > 1 and batch_groups > 1:
        raise ValueError(
            f"{op}: at most one of feature_group_count={feature_groups} and batch_group_count={batch_groups} "
            "may be above 1"
        )
    if features % feature_groups:
        raise ValueError(
            f"{op}: feature_group_count={feature_groups} does not divide the input features {features} "
            f"(lhs.shape={tuple(lhs_shape)})"
        )
    if features // feature_groups != kernel_in:
        raise ValueError(
            f"{op}: channel mismatch: lhs has {features} features, so with feature_group_count={feature_groups} "
            f"rhs must read {features // feature_groups}, but rhs.shape={tuple(rhs_shape)} reads {kernel_in}"
        )
    for name, count in (("feature_group_count", feature_groups), ("batch_group_count", batch_groups)):
        if kernel_out % count:
            raise ValueError(
                f"{op}: {name}={count} does not divide the kernel's output features {kernel_out} "
                f"(rhs.shape={tuple(rhs_shape)})"
            )
    if batch % batch_groups:
        raise ValueError(
            f"{op}: batch_group_count={batch_groups} does not divide the batch {batch} (lhs.shape={tuple(lhs_shape)})"
        )


def as_precision(op: str, precision: object):
    """``None``, or lax's precision as one ``lax.Precision`` or a pair of them (strings converted)."""
    if precision is None:
        return None

    def one(p):
        if isinstance(p, lax.Precision):
            return p
        if isinstance(p, str):
            try:
                return lax.Precision(p)
            except ValueError:
                pass
        names = sorted(name.lower() for name in lax.Precision.__members__)
        raise ValueError(
            f"{op}: precision must be None, a lax.Precision, one of {names} or a pair of them, "
            f"got precision={precision!r}"
        )

    if isinstance(precision, (tuple, list)) and len(precision) == 2:
        return one(precision[0]), one(precision[1])
    return one(precision)


def as_result_type(op: str, preferred_element_type: object, input_dtype):
    """``None``, or a floating dtype no narrower than the inputs' (lax's rule)."""
    if preferred_element_type is None:
        return None
    try:
        dtype = np.dtype(preferred_element_type)
    except TypeError as error:
        raise TypeError(
            f"{op}: preferred_element_type must be a dtype, got preferred_element_type={preferred_element_type!r}"
        ) from error
    if not jnp.issubdtype(dtype, jnp.floating) or dtype.itemsize < jnp.dtype(input_dtype).itemsize:
        raise TypeError(
            f"{op}: preferred_element_type must be a floating dtype no narrower than the inputs' {input_dtype}, "
            f"got preferred_element_type={dtype}"
        )
    return dtype

"""Upsampling (``F.interpolate``'s nearest and linear modes) with a hand-derived VJP: one matrix per spatial axis.

Read top to bottom: the public ``upsample``, the ``custom_vjp`` function, ``_fwd``
(it saves nothing), ``_bwd`` (the transpose, as code), ``defvjp``; then the
per-axis contraction, the interpolation matrices and PyTorch's source-index rules
they are built from (one rule per function), and the argument checks.

Interpolation is separable and linear in ``x``: along each spatial axis ``d`` an
output sample is a fixed combination of at most two input samples, so the whole
op is a static ``(out_d, in_d)`` matrix ``A_d`` per axis (one nonzero a row for
the nearest modes, at most two for the linear ones), applied to that axis. The
forward contracts each spatial axis with its ``A_d``, the backward with ``A_d^T``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Sequence
from functools import partial

import jax
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from convgrad.ops import arguments
from convgrad.ops.precision import accumulator_dtype

NEAREST_MODES = ("nearest", "nearest-exact")
LINEAR_MODES = {"linear": 1, "bilinear": 2, "trilinear": 3}  # each linear mode and its number of spatial dims
MODES = (*NEAREST_MODES, *LINEAR_MODES)


@dataclasses.dataclass(frozen=True)
class UpsampleGeometry:
    """Everything static about one interpolation: mode, per-axis input and output sizes and scale factors; layout.

    ``scales[d]`` is the ``scale_factor`` the caller gave for axis ``d`` (``None``
    when ``size`` was given): PyTorch's index rules use it, not ``in / out``.
    """

    mode: str
    in_spatial: tuple[int, ...]
    out_spatial: tuple[int, ...]
    scales: tuple[float | None, ...]
    align_corners: bool = False
    channels_last: bool = False

    @property
    def spatial_axes(self) -> tuple[int, ...]:
        """The axes of ``x`` (and ``y``) that are interpolated."""
        first = 1 if self.channels_last else 2
        return tuple(range(first, first + len(self.in_spatial)))

    def matrices(self) -> tuple[np.ndarray | None, ...]:
        """``A_d`` per spatial axis (:func:`interpolation_matrix`), ``None`` where it is the identity."""
        return tuple(
            interpolation_matrix(self.mode, i, o, s, self.align_corners)
            for i, o, s in zip(self.in_spatial, self.out_spatial, self.scales)
        )


def upsample(
    x: ArrayLike,
    *,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    channel_axis: int = 1,
) -> jax.Array:
    r"""Resize the spatial axes of ``x`` as ``torch.nn.functional.interpolate`` does, for its nearest and linear modes.

    In 2-D (channel-first), with ``i, j`` the output row and column and ``h, w``
    the input's, the output is separable::

        y[n, c, i, j] = sum_{h, w} A_H[i, h] A_W[j, w] x[n, c, h, w]

    where ``A_H`` (``H_out x H``) and ``A_W`` (``W_out x W``) are built per axis by
    PyTorch's rules from the input size ``in``, the output size ``out`` and the
    caller's ``scale_factor`` ``s`` (1-D and 3-D use one and three such matrices).
    The source-coordinate ratio is ``r = 1 / s`` when ``s`` was given (as
    ``F.interpolate`` with ``recompute_scale_factor`` unset uses it) and
    ``r = in / out`` otherwise; output row ``o`` of ``A`` is:

    * ``"nearest"``: a single 1 at ``src(o) = min(floor(o r), in - 1)``
      (``nearest_neighbor_compute_source_index``), except ``src(o) = o`` when
      ``out = in`` and ``o // 2`` when ``out = 2 in`` (the shortcuts of ATen's
      ``nearest_idx``, taken whatever ``s``);
    * ``"nearest-exact"``: a single 1 at ``src(o) = min(floor((o + 1/2) r), in - 1)``
      (``nearest_neighbor_exact_compute_source_index``; Pillow's and scipy's rule);
    * ``"linear"``, ``"bilinear"``, ``"trilinear"`` (one, two, three spatial
      dims): the real source coordinate is ``t = o r'`` with
      ``r' = (in - 1) / (out - 1)`` (0 when ``out = 1``) if ``align_corners``,
      else ``t = max((o + 1/2) r - 1/2, 0)`` (``area_pixel_compute_source_index``);
      then ``h0 = min(floor(t), in - 1)``, ``h1 = min(h0 + 1, in - 1)``,
      ``l1 = clip(t - h0, 0, 1)``, and the row holds ``1 - l1`` at ``h0`` and ``l1``
      at ``h1`` (added when ``h0 = h1``). When ``out = in`` the row is ``e_o``: PyTorch
      copies such an axis, whatever ``s``.

    ``floor`` is taken of the coordinate rounded to float32 (C's ``floorf``, as in
    the ATen kernels), the rest in float64, as PyTorch's float64 CPU kernels do.
    (Its float32 and 16-bit kernels compute the coordinate in float32, which
    could round across an integer and pick the neighbouring sample; the matrices
    here do not depend on the dtype.) With ``scale_factor``, ``out = floor(in s)``.

    ``y`` is linear in ``x``, so for a cotangent ``g`` shaped like ``y`` the input
    gradient is the transpose applied to ``g``::

        dx[n, c, h, w] = sum_{i, j} A_H[i, h] A_W[j, w] g[n, c, i, j]

    i.e. ``A_H^T g A_W`` per plane: each ``g[n, c, i, j]`` goes back to the (one
    to four; in 3-D up to eight) input samples ``y[n, c, i, j]`` was read from, weighted by the same
    products of ``1 - l1``/``l1`` per axis, and adds to whatever other outputs
    sent there. For the nearest modes each input sample receives the sum of the
    cotangents of every output that copied it (for a 2x upsample, its 2x2 block;
    when downsampling, the samples no output reads get 0). The backward contracts
    each spatial axis with ``A_d^T``, in float32 at least, as the forward does
    with ``A_d``.

    Differences from PyTorch, on purpose: PyTorch's CPU kernels for
    ``"nearest"`` disagree with each other when a ``scale_factor`` other than 1
    or 2 gives ``floor(in s) = in`` or ``2 in`` (``in = 3, s = 1.2``): every
    backward and the 2-D forward take ``nearest_idx``'s shortcuts, the 1-D and
    3-D forwards do not, so there the 1-D and 3-D gradients are not the
    transpose of their forwards. convgrad takes the shortcuts everywhere: its
    values equal PyTorch's 2-D forward and its gradients every PyTorch backward.
    ``recompute_scale_factor=True`` is not an argument: it is ``size=floor(in s)``.
    Modes ``"bicubic"`` and ``"area"`` and antialiasing are not implemented.

    Args:
      x: input, ``(N, C, *in)`` (or ``(N, *in, C)`` with ``channel_axis=-1``)
        with 1 to 3 spatial dims, each at least 1. Floating dtype. ``N`` and
        ``C`` may be 0.
      size: the output's spatial size, an int (every spatial dim) or one
        positive int per spatial dim. Exactly one of ``size`` and
        ``scale_factor``.
      scale_factor: ``s``, a positive number or one per spatial dim;
        ``out = floor(in s)`` must be at least 1.
      mode: ``"nearest"`` (default), ``"nearest-exact"``, or ``"linear"`` /
        ``"bilinear"`` / ``"trilinear"`` for 1 / 2 / 3 spatial dims.
      align_corners: linear modes only: ``True`` maps the corner samples'
        centres onto each other, ``False`` (the default when ``None``) the
        corners of the grids. Must be ``None`` for the nearest modes.
      channel_axis: ``1`` (channel-first, the default) or ``-1`` (channels-last).

    Returns:
      ``y``, ``(N, C, *out)`` (or ``(N, *out, C)``), in ``x``'s dtype.

    Raises:
      TypeError: ``x`` not a floating array; ``mode`` not a string; ``size``
        or ``scale_factor`` not numbers; ``align_corners`` not a bool.
      ValueError: both or neither of ``size`` and ``scale_factor``; a size or
        scale that is not positive, or ``size``/``scale_factor`` of the wrong
        length; an empty output; an unknown ``mode`` or one that does not match
        the number of spatial dims; ``align_corners`` with a nearest mode;
        ``x`` without 1 to 3 spatial dims, or with an empty one; a bad
        ``channel_axis``.

    Examples:
      Nearest 2x copies each sample twice; its gradient sums each pair of
      cotangents. Linear 2x (``align_corners=False``) puts the new samples a
      quarter of the way between the old ones, clamped at the borders:

      >>> import jax, jax.numpy as jnp, convgrad
      >>> x = jnp.array([[[1.0, 2.0, 4.0]]])                  # (N, C, W) = (1, 1, 3)
      >>> convgrad.upsample(x, scale_factor=2)
      Array([[[1., 1., 2., 2., 4., 4.]]], dtype=float32)
      >>> convgrad.upsample(x, scale_factor=2, mode="linear")
      Array([[[1.  , 1.25, 1.75, 2.5 , 3.5 , 4.  ]]], dtype=float32)
      >>> g = jnp.array([[[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]])
      >>> _, vjp = jax.vjp(lambda x: convgrad.upsample(x, scale_factor=2), x)
      >>> vjp(g)[0]
      Array([[[ 3.,  7., 11.]]], dtype=float32)

    References:
      ``torch.nn.functional.interpolate``
      (https://pytorch.org/docs/stable/generated/torch.nn.functional.interpolate.html)
      and the index rules of ATen's ``aten/src/ATen/native/UpSample.h``;
      Odena, Dumoulin and Olah, "Deconvolution and Checkerboard Artifacts",
      Distill 2016 (upsample-then-convolve in decoders).
    """
    x, geometry = upsample_arguments("upsample", x, size, scale_factor, mode, align_corners, channel_axis)
    return _upsample(geometry, x)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _upsample(geometry: UpsampleGeometry, x: jax.Array) -> jax.Array:
    return upsample_forward(x, geometry)


def _upsample_fwd(geometry, x):
    """Save nothing: the map is linear in ``x`` and its transpose is the static matrices ``A_d^T``."""
    return upsample_forward(x, geometry), None


def _upsample_bwd(geometry, _, g):
    """``dx``: ``g`` contracted with ``A_d^T`` along each spatial axis (the formula of the docstring)."""
    return (upsample_input_grad(g, geometry),)


_upsample.defvjp(_upsample_fwd, _upsample_bwd)


def upsample_forward(x: jax.Array, geometry: UpsampleGeometry) -> jax.Array:
    """``y = x x_d A_d`` for every spatial axis ``d`` (identity axes skipped), summed in at least float32."""
    y = x.astype(accumulator_dtype(x.dtype))
    for axis, matrix in zip(geometry.spatial_axes, geometry.matrices()):
        if matrix is not None:
            y = contract_axis(y, matrix, axis)
    return y.astype(x.dtype)


def upsample_input_grad(g: jax.Array, geometry: UpsampleGeometry) -> jax.Array:
    """``dx = g x_d A_d^T`` for every spatial axis ``d``: each cotangent back to its sources, weighted."""
    dx = g.astype(accumulator_dtype(g.dtype))
    for axis, matrix in zip(geometry.spatial_axes, geometry.matrices()):
        if matrix is not None:
            dx = contract_axis(dx, matrix.T, axis)
    return dx.astype(g.dtype)


def contract_axis(a: jax.Array, matrix: np.ndarray, axis: int) -> jax.Array:
    """``b[.., o, ..] = sum_i matrix[o, i] a[.., i, ..]`` along ``axis``: a ``dot_general``, the axis moved back."""
    m = np.asarray(matrix, a.dtype)
    b = lax.dot_general(m, a, (((1,), (axis,)), ((), ())), preferred_element_type=a.dtype)
    order = (*range(1, axis + 1), 0, *range(axis + 1, a.ndim))  # b is (out, *other axes): move out back to ``axis``
    return lax.transpose(b, order)


# ---------------------------------------------------------------------------- the matrices and PyTorch's index rules


@functools.lru_cache(maxsize=256)
def interpolation_matrix(
    mode: str, in_size: int, out_size: int, scale: float | None, align_corners: bool
) -> np.ndarray | None:
    """``A`` (``out x in``, float64) of one axis: row ``o`` holds the weights of output ``o``'s sources; ``None`` for I.

    Read-only (it is cached).
    """
    matrix = np.zeros((out_size, in_size))
    for o in range(out_size):
        if mode == "nearest":
            matrix[o, nearest_source_index(o, in_size, out_size, scale)] = 1.0
        elif mode == "nearest-exact":
            matrix[o, nearest_exact_source_index(o, in_size, out_size, scale)] = 1.0
        else:
            h0, h1, l0, l1 = linear_source_taps(o, in_size, out_size, scale, align_corners)
            matrix[o, h0] += l0
            matrix[o, h1] += l1
    if out_size == in_size and np.array_equal(matrix, np.eye(in_size)):
        return None
    matrix.flags.writeable = False
    return matrix


def source_ratio(in_size: int, out_size: int, scale: float | None, align_corners: bool) -> float:
    """``r``: ``(in - 1) / (out - 1)`` (0 if ``out = 1``) if ``align_corners``, else ``1 / s`` if given, or ``in/out``.

    ATen's ``area_pixel_compute_scale`` (``compute_scales_value`` for a given ``s``).
    """
    if align_corners:
        return (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    return 1.0 / scale if scale is not None else in_size / out_size


def floor_as_float32(t: float) -> int:
    """``floor(float32(t))``: C's ``floorf`` on a double argument, as the ATen kernels call it."""
    return math.floor(np.float32(t))


def nearest_source_index(o: int, in_size: int, out_size: int, scale: float | None) -> int:
    """``o`` if ``out = in``, ``o // 2`` if ``out = 2 in``, else ``min(floor(o r), in - 1)``: ATen's ``nearest_idx``.

    The formula is ``nearest_neighbor_compute_source_index``; the two shortcuts
    come first, whatever ``s`` (they differ from the formula only for a given
    ``s`` other than 1 or 2 whose ``floor(in s)`` is ``in`` or ``2 in``).
    """
    if out_size == in_size:
        return o
    if out_size == 2 * in_size:
        return o // 2
    r = source_ratio(in_size, out_size, scale, align_corners=False)
    return min(floor_as_float32(r * o), in_size - 1)


def nearest_exact_source_index(o: int, in_size: int, out_size: int, scale: float | None) -> int:
    """``min(floor((o + 1/2) r), in - 1)``: ``"nearest-exact"`` (``(o + 1/2) r - 1/2``, rounded half up)."""
    r = source_ratio(in_size, out_size, scale, align_corners=False)
    t = max(r * (o + 0.5) - 0.5, 0.0)
    return min(floor_as_float32(t + 0.5), in_size - 1)


def linear_source_taps(
    o: int, in_size: int, out_size: int, scale: float | None, align_corners: bool
) -> tuple[int, int, float, float]:
    """``(h0, h1, 1 - l1, l1)``: output ``o``'s two sources and weights (ATen's ``compute_source_index_and_lambda``).

    ``t = o r`` (``align_corners``) or ``max((o + 1/2) r - 1/2, 0)``; ``h0 = min(floor(t), in - 1)``,
    ``h1 = min(h0 + 1, in - 1)``, ``l1 = clip(t - h0, 0, 1)``. An axis with ``out = in`` is copied.
    """
    if out_size == in_size:
        return o, o, 1.0, 0.0
    r = source_ratio(in_size, out_size, scale, align_corners)
    t = r * o if align_corners else max(r * (o + 0.5) - 0.5, 0.0)
    h0 = min(floor_as_float32(t), in_size - 1)
    h1 = h0 + 1 if h0 < in_size - 1 else h0
    l1 = min(max(t - h0, 0.0), 1.0)
    return h0, h1, 1.0 - l1, l1


def output_size(in_size: int, scale: float) -> int:
    """``floor(in s)``, in float64 (ATen's ``compute_output_size``)."""
    return math.floor(float(in_size) * scale)


# ---------------------------------------------------------------------------- arguments


def upsample_arguments(op, x, size, scale_factor, mode, align_corners, channel_axis):
    """The checked input and the :class:`UpsampleGeometry` of ``upsample``."""
    x = arguments.as_float_array(op, "x", x)
    arguments.ndim_between(op, "x", x, 3, 5, "(N, C, *spatial) with 1 to 3 spatial dims")
    channels_last = channels_last_axis(op, channel_axis, x.ndim)
    n = x.ndim - 2
    in_spatial = tuple(x.shape[1:-1] if channels_last else x.shape[2:])
    if min(in_spatial) < 1:
        raise ValueError(f"{op}: every spatial dim of x must be at least 1, got x.shape={tuple(x.shape)}")
    if not isinstance(mode, str):
        raise TypeError(f"{op}: mode must be a string, one of {', '.join(map(repr, MODES))}; got mode={mode!r}")
    if mode not in MODES:
        raise ValueError(f"{op}: mode={mode!r} is not one of {', '.join(map(repr, MODES))}")
    if mode in LINEAR_MODES and LINEAR_MODES[mode] != n:
        raise ValueError(
            f"{op}: mode={mode!r} interpolates {LINEAR_MODES[mode]} spatial dim(s), but x has {n} "
            f"(x.shape={tuple(x.shape)}); use {next(m for m, k in LINEAR_MODES.items() if k == n)!r}"
        )
    if mode in NEAREST_MODES:
        if align_corners is not None:
            raise ValueError(
                f"{op}: align_corners is only for the linear modes, got align_corners={align_corners!r} "
                f"with mode={mode!r}"
            )
        align_corners = False
    elif align_corners is None:
        align_corners = False
    elif not isinstance(align_corners, (bool, np.bool_)):
        raise TypeError(f"{op}: align_corners must be a bool or None, got align_corners={align_corners!r}")
    if (size is None) == (scale_factor is None):
        raise ValueError(
            f"{op}: give exactly one of size and scale_factor, got size={size!r}, scale_factor={scale_factor!r}"
        )
    if size is not None:
        out_spatial = arguments.as_tuple(op, "size", size, n, minimum=1)
        scales = (None,) * n
    else:
        scales = scale_factors(op, scale_factor, n)
        out_spatial = tuple(output_size(i, s) for i, s in zip(in_spatial, scales))
        for axis, (i, s, o) in enumerate(zip(in_spatial, scales, out_spatial)):
            if o < 1:
                raise ValueError(
                    f"{op}: scale_factor={scale_factor!r} gives an empty output along spatial dim {axis}: "
                    f"floor({i} * {s!r}) = {o} (x.shape={tuple(x.shape)})"
                )
    return x, UpsampleGeometry(mode, in_spatial, out_spatial, scales, bool(align_corners), channels_last)


def scale_factors(op: str, scale_factor: object, n: int) -> tuple[float, ...]:
    """A positive finite number, or ``n`` of them, as ``n`` Python floats."""
    message = f"{op}: scale_factor must be a positive number or {n} of them (one per spatial dim), got "
    values = scale_factor if isinstance(scale_factor, Sequence) and not isinstance(scale_factor, str) else None
    if values is not None and len(values) != n:
        raise ValueError(message + f"scale_factor={scale_factor!r}")
    values = (scale_factor,) * n if values is None else tuple(values)
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise TypeError(message + f"scale_factor={scale_factor!r}")
        if not (math.isfinite(v) and v > 0):
            raise ValueError(message + f"scale_factor={scale_factor!r}")
    return tuple(float(v) for v in values)


def channels_last_axis(op: str, channel_axis: object, ndim: int) -> bool:
    """``channel_axis`` is 1 (channel-first) or -1 / ``ndim - 1`` (channels-last); True for channels-last."""
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, int) or channel_axis not in (1, -1, ndim - 1):
        raise ValueError(
            f"{op}: channel_axis must be 1 (N, C, *spatial) or -1 (N, *spatial, C), got channel_axis={channel_axis!r}"
        )
    return channel_axis != 1

"""The Winograd formulation of a 3x3, stride-1 convolution and of its two gradients: F(2x2, 3x3).

``conv(..., formulation="winograd")`` uses these three functions; ``"auto"`` picks them on
CPU where they were measured faster (see :mod:`convgrad.ops.conv_formulations` and
``docs/performance.md``). They compute the same sums as the textbook convolutions, with
fewer multiplications: 16 per 2x2 output tile and channel pair in place of 36.

**The identity** (Lavin & Gray, 2015). Split the output into 2x2 tiles; tile ``t`` reads a
4x4 tile ``d_t`` of the padded input (tiles overlap by 2). For one input channel ``c``
and output channel ``o``, with the constant matrices ``B^T`` (4x4), ``G`` (4x3) and
``A^T`` (2x4) below::

    y_t[o] = A^T [ sum_c (G w[c, o] G^T) . (B^T d_t[c] B) ] A          (. : elementwise)

Call ``V[p, t, c] = (B^T d_t[c] B)[p]`` the transformed input and ``U[p, c, o] =
(G w[c, o] G^T)[p]`` the transformed kernel, for each of the 16 positions ``p = (i, j)``
of a 4x4 tile. Then the sum over ``c`` is, for each ``p``, one matrix product
``M[p] = V[p] @ U[p]`` (tiles x C times C x O), and ``y_t = A^T M_t A``.

**Forward**, :func:`conv_forward_winograd`: transform the input tiles (strided slices of
the padded input, added and subtracted), 16 GEMMs, transform the products back into 2x2
output tiles. The output is computed on an even grid and cropped.

**Input gradient**, :func:`conv_input_grad_winograd`: the textbook rule (correlate the
padded cotangent with the flipped, channel-swapped kernel; stride and dilation 1 insert
no zeros), with that convolution computed by the forward above.

**Weight gradient**, :func:`conv_weight_grad_winograd`: the forward is linear in ``U``,
``y_t = A^T (sum_c V_t[c] . U[c, o]) A``, so its adjoint is, per position ``p``::

    dU[p, c, o] = sum_t V[p, t, c] (A g_t[o] A^T)[p]         i.e.  dU[p] = V[p]^T @ Mg[p]

(``g_t`` is the 2x2 cotangent tile, ``A g_t A^T`` its 4x4 transform, zero where the
output grid was extended). ``U = G w G^T`` is linear in ``w`` too, so
``dw[c, o] = G^T dU[c, o] G``: 16 GEMMs that contract over all tiles, then a 4x4 -> 3x3
transform.

The 16 transformed tiles of a batch are 4x the input's size (and of the output's, for
``M``), so the batch is processed in chunks whose transformed tiles fit
:data:`CHUNK_BYTES` and stay in cache (why that is what makes this formulation pay on
CPU, measured, is in ``docs/performance.md``). Products are summed in at least float32. The transforms' coefficients
(0, +-1, +-1/2) are exact in binary, so float64 results match the textbook ones to
rounding.

Layout: any; arrays are moved to channels-last (``(N, H, W, C)``, kernel ``(3, 3, C, O)``)
and back, which is free for ``("NHWC", "HWIO", "NHWC")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from convgrad.ops.batch_chunks import in_batch_order, map_batch_chunks
from convgrad.ops.geometry import ConvGeometry, Pair, conv_output_size, input_grad_padding
from convgrad.ops.precision import accumulator_dtype

B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]])

# Batch chunks are sized so that one chunk's transformed tiles, V and M, take at most this
# many bytes. Measured on the 2-core machine of docs/performance.md (forward, chunks of 1 to
# 32 images): the fastest chunks held 10 to 19 MB of tiles on four layers from 16->32 28x28
# to 64->64 56x56, 1.2-2x faster than the whole batch at once on the wide layers.
CHUNK_BYTES = 16 * 2**20


def winograd_applies(geometry: ConvGeometry, kernel_spatial: Sequence[int]) -> bool:
    """Whether F(2x2, 3x3) computes this convolution: 2-D, 3x3 kernel, stride 1, dilation 1, one group.

    And none of lax's extras (:attr:`ConvGeometry.plain`): no input dilation, no batch groups.
    """
    return (
        geometry.plain
        and tuple(kernel_spatial) == (3, 3)
        and tuple(geometry.stride) == (1, 1)
        and tuple(geometry.dilation) == (1, 1)
        and geometry.groups == 1
    )


def conv_forward_winograd(x: jax.Array, w: jax.Array, b: jax.Array | None, geometry: ConvGeometry) -> jax.Array:
    """``y = x * w + b``: per batch chunk, input tiles transformed, 16 GEMMs, output tiles transformed back."""
    dn = geometry.dn
    x_last = jnp.transpose(x, (dn.lhs_spec[0], *dn.lhs_spec[2:], dn.lhs_spec[1]))  # (N, H, W, C)
    w_last = jnp.transpose(w, (*dn.rhs_spec[2:], dn.rhs_spec[1], dn.rhs_spec[0]))  # (3, 3, C, O)
    y = _correlate(x_last, w_last, geometry.padding)
    if b is not None:
        y = y + b.astype(y.dtype)
    where = (dn.out_spec[0], *dn.out_spec[2:], dn.out_spec[1])  # the output axis of each axis of y
    return jnp.transpose(y.astype(x.dtype), [where.index(axis) for axis in range(y.ndim)])


def conv_input_grad_winograd(
    g: jax.Array, w: jax.Array, geometry: ConvGeometry, in_spatial: tuple[int, ...]
) -> jax.Array:
    """``dx``: the cotangent, padded by ``input_grad_padding``, correlated with the flipped, channel-swapped kernel."""
    dn = geometry.dn
    g_last = jnp.transpose(g, (dn.out_spec[0], *dn.out_spec[2:], dn.out_spec[1]))  # (N, H', W', O)
    w_last = jnp.transpose(w, (*dn.rhs_spec[2:], dn.rhs_spec[1], dn.rhs_spec[0]))  # (3, 3, C, O)
    w_t = jnp.swapaxes(w_last[::-1, ::-1], 2, 3)  # (3, 3, O, C): w_t[kh, kw, o, c] = w[2 - kh, 2 - kw, c, o]
    padding = tuple(
        input_grad_padding(n_in, 3, 1, p, 1, n_out)
        for n_in, p, n_out in zip(in_spatial, geometry.padding, g_last.shape[1:3])
    )
    dx = _correlate(g_last, w_t, padding)  # (N, H, W, C)
    where = (dn.lhs_spec[0], *dn.lhs_spec[2:], dn.lhs_spec[1])
    return jnp.transpose(dx.astype(g.dtype), [where.index(axis) for axis in range(dx.ndim)])


def conv_weight_grad_winograd(
    x: jax.Array, g: jax.Array, geometry: ConvGeometry, kernel_spatial: tuple[int, ...]
) -> jax.Array:
    """``dw = G^T (sum over chunks and tiles of V[p]^T @ (A g A^T)[p]) G``, laid out like ``w``."""
    dn = geometry.dn
    x_last = jnp.transpose(x, (dn.lhs_spec[0], *dn.lhs_spec[2:], dn.lhs_spec[1]))  # (N, H, W, C)
    g_last = jnp.transpose(g, (dn.out_spec[0], *dn.out_spec[2:], dn.out_spec[1]))  # (N, H', W', O)
    acc = accumulator_dtype(x.dtype)
    x_last, g_last = x_last.astype(acc), g_last.astype(acc)
    grid = _tile_grid(x_last.shape[1:3], geometry.padding)
    channels, out_channels = x_last.shape[-1], g_last.shape[-1]

    def chunk_weight_grad(operands):
        x_chunk, g_chunk = operands
        v = _input_tiles(x_chunk, geometry.padding, grid)
        m_g = _cotangent_tiles(g_chunk, grid)
        return jnp.stack(
            [lax.dot_general(v[p], m_g[p], (((0,), (0,)), ((), ()))) for p in range(16)]
        )  # (16, C, O): dU[p] = V[p]^T @ Mg[p]

    per_image = 16 * grid.tiles_per_image * (channels + out_channels) * jnp.dtype(acc).itemsize
    d_u = map_batch_chunks(chunk_weight_grad, (x_last, g_last), CHUNK_BYTES // per_image).sum(axis=1)
    d_u = d_u.reshape(4, 4, channels, out_channels)
    g_mat = np.asarray(G)
    dw = jnp.einsum("ia,jb,ijco->abco", g_mat, g_mat, d_u, precision=lax.Precision.HIGHEST)  # (3, 3, C, O)
    return jnp.transpose(dw.astype(x.dtype), np.argsort((*dn.rhs_spec[2:], dn.rhs_spec[1], dn.rhs_spec[0])))


class _TileGrid(NamedTuple):
    """The 2x2 output tiles: output size ``(H', W')`` and ``(T_h, T_w) = ceil(out / 2)`` tiles."""

    out_spatial: tuple[int, int]
    tiles: tuple[int, int]

    @property
    def tiles_per_image(self) -> int:
        return self.tiles[0] * self.tiles[1]


def _tile_grid(in_spatial: Sequence[int], padding: Sequence[Pair]) -> _TileGrid:
    out_spatial = tuple(conv_output_size(n, 3, 1, p, 1) for n, p in zip(in_spatial, padding))
    return _TileGrid(out_spatial, tuple(-(-n // 2) for n in out_spatial))


def _correlate(x: jax.Array, w: jax.Array, padding: Sequence[Pair]) -> jax.Array:
    """Stride-1 3x3 correlation of channels-last ``x`` (N, H, W, C) with ``w`` (3, 3, C, O) in the accumulator dtype."""
    acc = accumulator_dtype(x.dtype)
    x, w = x.astype(acc), w.astype(acc)
    grid = _tile_grid(x.shape[1:3], padding)
    u = _kernel_tiles(w)  # (16, C, O)

    def chunk_forward(x_chunk):
        v = _input_tiles(x_chunk, padding, grid)
        m = [jnp.matmul(v[p], u[p], precision=lax.Precision.HIGHEST) for p in range(16)]  # (tiles, O) each
        return _output_tiles(m, (x_chunk.shape[0], *grid.tiles, w.shape[-1]))

    per_image = 16 * grid.tiles_per_image * (w.shape[2] + w.shape[3]) * jnp.dtype(acc).itemsize
    y = in_batch_order(map_batch_chunks(chunk_forward, x, CHUNK_BYTES // per_image), x.shape[0])  # (N, 2 T_h, 2 T_w, O)
    return y[:, : grid.out_spatial[0], : grid.out_spatial[1]]


def _combine(matrix: np.ndarray, terms: Sequence[jax.Array]) -> list[jax.Array]:
    """``[sum_a matrix[i, a] terms[a] for each row i]``, skipping zero coefficients (the transforms are sparse)."""
    rows = []
    for coefficients in matrix:
        total = None
        for coefficient, term in zip(coefficients, terms):
            if coefficient == 0:
                continue
            scaled = term if coefficient == 1 else -term if coefficient == -1 else term * coefficient
            total = scaled if total is None else total + scaled
        rows.append(total)
    return rows


def _input_tiles(x: jax.Array, padding: Sequence[Pair], grid: _TileGrid) -> list[jax.Array]:
    """``V[p]`` for the 16 positions ``p = 4 i + j``: ``(B^T d_t B)[i, j]`` for every tile, ``(n T_h T_w, C)``.

    ``d_t[a, b]`` for all tiles at once is the strided slice ``x_pad[:, a::2, b::2]``;
    the input is padded by ``padding`` and then at the high end to the even grid.
    """
    (t_h, t_w), (o_h, o_w) = grid.tiles, grid.out_spatial
    (lo_h, hi_h), (lo_w, hi_w) = padding
    pads = [(0, 0, 0), (lo_h, hi_h + 2 * t_h - o_h, 0), (lo_w, hi_w + 2 * t_w - o_w, 0), (0, 0, 0)]
    x_pad = lax.pad(x, jnp.zeros((), x.dtype), pads)
    d = [[x_pad[:, a : a + 2 * t_h : 2, b : b + 2 * t_w : 2] for b in range(4)] for a in range(4)]
    columns = [_combine(B_T, [d[a][b] for a in range(4)]) for b in range(4)]  # columns[b][i] = (B^T d)[i, b]
    v = [_combine(B_T, [columns[b][i] for b in range(4)]) for i in range(4)]  # v[i][j] = (B^T d B)[i, j]
    return [v[i][j].reshape(-1, x.shape[-1]) for i in range(4) for j in range(4)]


def _kernel_tiles(w: jax.Array) -> jax.Array:
    """``U[p] = (G w G^T)[i, j]``, ``(16, C, O)``."""
    g_mat = np.asarray(G)
    return jnp.einsum("ia,jb,abco->ijco", g_mat, g_mat, w, precision=lax.Precision.HIGHEST).reshape(16, *w.shape[2:])


def _output_tiles(m: list[jax.Array], tiled_shape: tuple[int, int, int, int]) -> jax.Array:
    """``y_t = A^T M_t A`` for every tile, interleaved into ``(n, 2 T_h, 2 T_w, O)``."""
    n, t_h, t_w, out_channels = tiled_shape
    columns = [_combine(A_T, [m[4 * i + j] for i in range(4)]) for j in range(4)]  # columns[j][u] = (A^T M)[u, j]
    tiles = [_combine(A_T, [columns[j][u] for j in range(4)]) for u in range(2)]  # tiles[u][v] = (A^T M A)[u, v]
    y = jnp.stack([jnp.stack([t.reshape(n, t_h, t_w, out_channels) for t in tiles[u]], axis=3) for u in range(2)], 2)
    return y.reshape(n, 2 * t_h, 2 * t_w, out_channels)


def _cotangent_tiles(g: jax.Array, grid: _TileGrid) -> list[jax.Array]:
    """``Mg[p] = (A g_t A^T)[i, j]`` for every tile, ``(n T_h T_w, O)``; ``g`` zero-padded to the even grid."""
    (t_h, t_w), (o_h, o_w) = grid.tiles, grid.out_spatial
    n, out_channels = g.shape[0], g.shape[-1]
    g = jnp.pad(g, ((0, 0), (0, 2 * t_h - o_h), (0, 2 * t_w - o_w), (0, 0))).reshape(n, t_h, 2, t_w, 2, out_channels)
    g_t = [[g[:, :, u, :, v].reshape(-1, out_channels) for v in range(2)] for u in range(2)]
    a = A_T.T  # (4, 2)
    columns = [_combine(a, [g_t[u][v] for u in range(2)]) for v in range(2)]  # columns[v][i] = (A g)[i, v]
    m_g = [_combine(a, [columns[v][i] for v in range(2)]) for i in range(4)]  # m_g[i][j] = (A g A^T)[i, j]
    return [m_g[i][j] for i in range(4) for j in range(4)]

"""Transposed convolution, pictured: the seed example of docs/derivations.md, step by step.

A 3x7x7 input convolved with one 3x3x3 filter ``w[0, c, i, j] = 9 c + 3 i + j``
at stride 2 gives a 1x3x3 output. The transposed convolution with the same
``w`` maps a 1x3x3 map ``z`` (here ``1..9``) back to 3x7x7, in three moves:

1. insert ``s - 1 = 1`` zero between the samples of ``z`` (``convgrad.zero_insert``): 3x3 -> 5x5;
2. pad by ``d (k - 1) - p = 2`` on each side: 5x5 -> 9x9;
3. correlate (stride 1) with the kernel flipped in space and with its channel
   axes swapped (``convgrad.flip_and_swap``: ``(1, 3, 3, 3) -> (3, 1, 3, 3)``, one
   output channel per input channel of the convolution): 9x9 -> 3 x 7x7.

The script asserts that ``convgrad.conv_transpose(z, w, stride=2)`` equals these
three moves done by hand with plain lax, equals the input gradient of the
convolution at cotangent ``z`` (both convgrad's hand-derived VJP and
``jax.vjp`` of a plain-lax convolution), and satisfies the adjoint identity
``<conv(x, w), z> = <x, conv_transpose(z, w)>``. All values are integers, so
every comparison is exact.

    PYTHONPATH=. python -m experiments.transpose
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import convgrad
from convgrad import autodiff
from experiments import common

NAME = "transpose"
STRIDE = 2


def seed_example() -> dict[str, jax.Array]:
    """``w (1, 3, 3, 3)`` (conv's ``(O, C, kh, kw)``), ``z (1, 1, 3, 3)``, ``x (1, 3, 7, 7)`` (adjoint check)."""
    w = jnp.arange(27.0, dtype=jnp.float32).reshape(1, 3, 3, 3)
    z = jnp.arange(1.0, 10.0, dtype=jnp.float32).reshape(1, 1, 3, 3)
    x = (jnp.arange(147.0, dtype=jnp.float32) % 5 - 2).reshape(1, 3, 7, 7)
    return {"w": w, "z": z, "x": x}


def compute(example: dict[str, jax.Array]) -> dict[str, Any]:
    w, z, x = example["w"], example["z"], example["x"]
    k = w.shape[-1]
    y = convgrad.conv_transpose(z, w, stride=STRIDE)

    z_up = convgrad.zero_insert(z, STRIDE)
    border = k - 1  # d (k - 1) - p with d = 1, p = 0
    z_pad = jnp.pad(z_up, ((0, 0), (0, 0), (border, border), (border, border)))
    w_t = convgrad.flip_and_swap(w)
    three_moves = lax.conv_general_dilated(z_pad, w_t, (1, 1), "VALID")

    # The input gradient of x -> conv(x, w, stride 2) at cotangent z: convgrad's hand-derived VJP, and JAX's.
    _, conv_vjp = jax.vjp(lambda x: convgrad.conv(x, w, stride=STRIDE), x)
    _, lax_vjp = jax.vjp(lambda x: autodiff.conv(x, w, stride=STRIDE), x)
    input_grad = conv_vjp(z)[0]
    lax_input_grad = lax_vjp(z)[0]

    forward = convgrad.conv(x, w, stride=STRIDE)
    checks = {
        "three_moves": float(jnp.max(jnp.abs(y - three_moves))),
        "convgrad_input_grad": float(jnp.max(jnp.abs(y - input_grad))),
        "jax_vjp_input_grad": float(jnp.max(jnp.abs(y - lax_input_grad))),
        "adjoint_identity": float(jnp.abs(jnp.vdot(forward, z) - jnp.vdot(x, y))),
    }
    return {
        "y": y,
        "z_zero_inserted": z_up,
        "z_padded": z_pad,
        "flipped_swapped_kernel": w_t,
        "conv_output_shape": tuple(forward.shape),
        "input_grad": input_grad,
        "max_abs_differences": checks,
        "equal": all(v == 0.0 for v in checks.values()),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = common.parser(__doc__.split("\n\n")[0]).parse_args(argv)
    example = seed_example()
    computed = compute(example)
    assert computed["equal"], f"conv_transpose disagrees: {computed['max_abs_differences']}"
    print(
        "conv_transpose(z, w, stride=2) equals the three moves done by hand, the input gradient of conv "
        "(convgrad's VJP and jax.vjp of plain lax) and satisfies the adjoint identity; max |difference|: "
        + ", ".join(f"{k} {v:g}" for k, v in computed["max_abs_differences"].items())
    )
    results = {"example": {k: np.asarray(v) for k, v in example.items()}, "stride": STRIDE}
    results.update({k: (np.asarray(v) if hasattr(v, "shape") else v) for k, v in computed.items()})
    common.write_json(args.out, NAME, results)
    plot(example, computed, args.out)
    return results


def plot(example: dict[str, jax.Array], computed: dict[str, Any], out) -> None:
    w, z = np.asarray(example["w"]), np.asarray(example["z"])
    z_up, z_pad = np.asarray(computed["z_zero_inserted"]), np.asarray(computed["z_padded"])
    w_t, y = np.asarray(computed["flipped_swapped_kernel"]), np.asarray(computed["y"])
    fig = common.plt.figure(figsize=(14, 12))
    grid = fig.add_gridspec(3, 6, height_ratios=(1.25, 0.8, 1.35), hspace=0.3, wspace=0.3)
    z_norm, w_norm, y_norm = common.symmetric_norm(z_pad), common.symmetric_norm(w), common.symmetric_norm(y)

    common.annotated_grid(fig.add_subplot(grid[0, 0]), z[0, 0], title="1. z (1x3x3)", norm=z_norm, fontsize=10)
    common.annotated_grid(
        fig.add_subplot(grid[0, 1]), z_up[0, 0], title="2. zero_insert(z, 2): 5x5\none 0 between samples", norm=z_norm
    )
    common.annotated_grid(
        fig.add_subplot(grid[0, 2:4]),
        z_pad[0, 0],
        title="3. padded by d(k-1) - p = 2 per side: 9x9",
        norm=z_norm,
    )
    text = fig.add_subplot(grid[0, 4:])
    text.axis("off")
    text.text(
        0.0,
        0.5,
        "conv(x, w, stride=2): 3x7x7 -> 1x3x3\n"
        "conv_transpose(z, w, stride=2): 1x3x3 -> 3x7x7\n\n"
        "Every sample of z pastes a copy of the kernel,\n"
        "scaled by its value, into the output, 2 apart;\n"
        "overlaps add. The same numbers as a gather:\n"
        "a stride-1 correlation of the zero-inserted,\n"
        "padded z with the flipped, channel-swapped\n"
        "kernel (row 2) gives each output channel (row 3).",
        fontsize=11,
        va="center",
        family="monospace",
    )
    for c in range(3):
        common.annotated_grid(fig.add_subplot(grid[1, c]), w[0, c], title=f"w[0, c={c}]\n(conv's filter)", norm=w_norm)
        common.annotated_grid(
            fig.add_subplot(grid[1, 3 + c]),
            w_t[c, 0],
            title=f"flip_and_swap(w)[{c}, 0]\n= w[0, {c}] flipped",
            norm=w_norm,
        )
    for c in range(3):
        common.annotated_grid(
            fig.add_subplot(grid[2, 2 * c : 2 * c + 2]),
            y[0, c],
            title=f"4. y[c={c}] (7x7) = the 9x9 map\ncorrelated with flip_and_swap(w)[{c}, 0]",
            norm=y_norm,
            fontsize=8,
        )
    diffs = computed["max_abs_differences"]
    fig.suptitle(
        "Transposed convolution: zero insertion, padding, flipped channel-swapped kernel (stride 2, one 3x3x3 filter)\n"
        "Asserted: conv_transpose(z, w) == the three moves == the input gradient of conv at cotangent z "
        f"(convgrad VJP and jax.vjp); max |diff| {max(diffs.values()):g}\n"
        "Colour: z-maps, kernels and outputs each on their own scale (white = 0).",
        fontsize=12,
    )
    common.save_figure(fig, out, NAME, palette=True)


if __name__ == "__main__":
    main()

"""Checkerboard artifacts: why strided transposed convolutions paint them and upsample-then-convolve does not.

Odena, Dumoulin and Olah (Distill 2016, "Deconvolution and Checkerboard Artifacts")
explain the pattern by overlap: a transposed convolution of kernel ``k`` and stride
``s`` pastes one copy of its kernel per input sample, ``s`` apart, so an output
sample is covered by ``ceil(k / s)`` or ``floor(k / s)`` copies depending on its
position modulo ``s``. With ``k = 3, s = 2`` the counts alternate 1, 2, 1, 2 per axis
(1, 2, 4 in 2-D); with ``k = 4, s = 2`` they are even (2 per axis, 4 in 2-D). Even
overlap is not enough: each of the ``s^2`` output phases sums a different subset of
the kernel's taps, so unless the weights are balanced per phase, a constant input
still gives a periodic output. Resizing first (nearest or bilinear, ``convgrad.upsample``)
and then convolving at stride 1 gives every output sample the same ``k^2`` taps:
a constant input gives a constant output, whatever the kernel.

The same pattern runs backwards: the input gradient of a strided convolution is
the transposed convolution of its cotangent, so ``conv(k=3, s=2)`` sends its
gradient to the input in the same 1/2/4 pattern.

Every map is 8x8, from a 4x4 all-ones input (or, for the gradients, an 8x8 input
and an all-ones 4x4 cotangent), single channel, so that every configuration is a 2x
resize: ``conv_transpose(k=3, s=2, padding=1, output_padding=1)``,
``conv_transpose(k=4, s=2, padding=1)``, ``upsample(scale_factor=2)`` (nearest and
bilinear) followed by ``conv(k=3, padding=1)``, and the input gradients of
``conv(k=3 or 4, s=2, padding=1)``. Each is computed twice: with an all-ones kernel
(the output is the overlap count: how many kernel taps reach each sample) and with a
random kernel (uniform in [0.5, 1.5), ``--seed``). The script asserts the facts
above; the counts are integers, exact in float32.

    PYTHONPATH=. python -m experiments.checkerboard
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import convgrad
from experiments import common

NAME = "checkerboard"
SIZE = 4  # the input's side; every map is 2 * SIZE = 8 on a side


def conv_transpose_map(k: int) -> Callable[[jax.Array], jax.Array]:
    """``w -> conv_transpose(ones(4x4), w, stride=2, padding=1)`` (``output_padding`` making it 8x8)."""
    ones = jnp.ones((1, 1, SIZE, SIZE), jnp.float32)
    return lambda w: convgrad.conv_transpose(ones, w, stride=2, padding=1, output_padding=(k % 2,) * 2)


def upsample_conv_map(mode: str) -> Callable[[jax.Array], jax.Array]:
    """``w -> conv(upsample(ones(4x4), scale_factor=2, mode), w, padding=1)``: a 2x resize, then a stride-1 conv."""
    ones = jnp.ones((1, 1, SIZE, SIZE), jnp.float32)
    return lambda w: convgrad.conv(convgrad.upsample(ones, scale_factor=2, mode=mode), w, padding=1)


def conv_input_grad_map(k: int) -> Callable[[jax.Array], jax.Array]:
    """``w -> d/dx <ones, conv(x, w, stride=2, padding=1)>`` at an 8x8 ``x``: the gradient a strided conv sends back."""
    x = jnp.zeros((1, 1, 2 * SIZE, 2 * SIZE), jnp.float32)

    def input_grad(w):
        y, vjp = jax.vjp(lambda x: convgrad.conv(x, w, stride=2, padding=1), x)
        return vjp(jnp.ones_like(y))[0]

    return input_grad


CONFIGURATIONS: dict[str, tuple[str, int, Callable[[jax.Array], jax.Array]]] = {
    "conv_transpose_k3": ("conv_transpose k=3, s=2", 3, conv_transpose_map(3)),
    "conv_transpose_k4": ("conv_transpose k=4, s=2", 4, conv_transpose_map(4)),
    "nearest_then_conv": ("upsample nearest 2x, conv k=3", 3, upsample_conv_map("nearest")),
    "bilinear_then_conv": ("upsample bilinear 2x, conv k=3", 3, upsample_conv_map("bilinear")),
    "conv_input_grad_k3": ("input gradient of conv k=3, s=2", 3, conv_input_grad_map(3)),
    "conv_input_grad_k4": ("input gradient of conv k=4, s=2", 4, conv_input_grad_map(4)),
}


def interior_phases(image: np.ndarray) -> np.ndarray:
    """The 2x2 table of the interior's values by (row parity, column parity), one border pixel left out.

    Raises ``AssertionError`` unless every phase is constant over the interior
    (to 1e-5 relative): the maps here are periodic with period 2.
    """
    inner = image[1:-1, 1:-1]
    table = np.zeros((2, 2))
    for a in range(2):
        for b in range(2):
            phase = inner[(1 - a) % 2 :: 2, (1 - b) % 2 :: 2]  # inner[0] is image row 1 (odd)
            assert np.ptp(phase) <= 1e-5 * np.max(np.abs(phase)), f"phase ({a}, {b}) is not constant: {phase}"
            table[a, b] = phase.flat[0]
    return table


def compute(seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    kernels = {k: jnp.asarray(rng.uniform(0.5, 1.5, (1, 1, k, k)), jnp.float32) for k in (3, 4)}
    maps = {}
    for name, (title, k, build) in CONFIGURATIONS.items():
        count = np.asarray(build(jnp.ones((1, 1, k, k), jnp.float32)))[0, 0]
        random = np.asarray(build(kernels[k]))[0, 0]
        count_phases, random_phases = interior_phases(count), interior_phases(random)
        maps[name] = {
            "title": title,
            "kernel_size": k,
            "count": count,
            "random_kernel_output": random,
            "count_phases": count_phases,
            "random_kernel_phases": random_phases,
            "random_kernel_phase_spread": float(np.ptp(random_phases) / np.mean(random_phases)),
            "even_interior": bool(np.ptp(count_phases) == 0),
        }
    facts = {
        # the overlap counts per axis: 1/2 alternating for k=3, an even 2 for k=4 (their outer products in 2-D)
        "k3_counts_alternate_1_2_4": sorted(np.unique(maps["conv_transpose_k3"]["count_phases"])) == [1.0, 2.0, 4.0],
        "k4_counts_even": maps["conv_transpose_k4"]["even_interior"],
        # even overlap, uneven weights: the k=4 output from a constant input still has four phase values
        "k4_random_kernel_still_periodic": maps["conv_transpose_k4"]["random_kernel_phase_spread"] > 0.01,
        # resize-then-convolve: every interior output sums all k^2 taps, sum(w), whatever w
        "upsample_conv_constant": all(
            np.allclose(maps[m]["random_kernel_phases"], float(jnp.sum(kernels[3])), rtol=1e-6)
            for m in ("nearest_then_conv", "bilinear_then_conv")
        ),
        # the input gradient of a strided conv is the transposed conv of the cotangent: the same maps
        "conv_input_grad_is_conv_transpose": all(
            np.array_equal(maps[f"conv_input_grad_k{k}"]["count"], maps[f"conv_transpose_k{k}"]["count"])
            and np.allclose(
                maps[f"conv_input_grad_k{k}"]["random_kernel_output"],
                maps[f"conv_transpose_k{k}"]["random_kernel_output"],
                rtol=1e-6,
            )
            for k in (3, 4)
        ),
    }
    return {"maps": maps, "kernels": {str(k): np.asarray(w)[0, 0] for k, w in kernels.items()}, "facts": facts}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = common.parser(__doc__.split("\n\n")[0]).parse_args(argv)
    results = {"seed": args.seed, "input_size": SIZE, **compute(args.seed)}
    failed = [name for name, holds in results["facts"].items() if not holds]
    assert not failed, f"checkerboard: facts that do not hold: {failed}"
    for m in results["maps"].values():
        print(
            f"{m['title']:34s} interior counts by phase {m['count_phases'].ravel().tolist()}, "
            f"random-kernel phase spread {m['random_kernel_phase_spread']:.3f}"
        )
    common.write_json(args.out, NAME, results)
    plot(results, args.out)
    return results


def plot(results: dict[str, Any], out) -> None:
    maps = results["maps"]
    fig, axes = common.plt.subplots(2, len(maps), figsize=(3.3 * len(maps), 7.6))
    count_norm = common.matplotlib.colors.Normalize(0, max(float(np.max(m["count"])) for m in maps.values()))
    for column, m in enumerate(maps.values()):
        spread = m["random_kernel_phase_spread"]
        common.annotated_grid(
            axes[0, column],
            m["count"],
            title=f"{m['title']}\noverlap count (ones kernel)",
            norm=count_norm,
            cmap="viridis",
            fontsize=7,
        )
        random = m["random_kernel_output"]
        common.annotated_grid(
            axes[1, column],
            random,
            title=f"random kernel: phase spread {spread:.2f}",
            norm=common.matplotlib.colors.Normalize(float(np.min(random)), float(np.max(random))),
            cmap="viridis",
            fmt="{:.1f}",
            fontsize=6,
        )
    fig.suptitle(
        "Checkerboards: a 4x4 constant input resized to 8x8 (columns 1-4); the input gradient of a strided conv "
        "(columns 5-6)\nTop: how many kernel taps reach each output (all-ones kernel). Bottom: the output with a "
        "random kernel in [0.5, 1.5); phase spread = (max - min) / mean of the interior's four phase values.",
        fontsize=11,
    )
    common.save_figure(fig, out, NAME, palette=True)


if __name__ == "__main__":
    main()

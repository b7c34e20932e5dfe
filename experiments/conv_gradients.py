"""Gradients of a multi-channel convolution, pictured: the seed example of docs/derivations.md, cell by cell.

A 3x3 input with 3 channels, ``x[0, c, h, w] = 9 c + 3 h + w``, one 2x2x3 filter
``w`` and bias ``b = 0.5`` give a 2x2 output ``y``. For the cotangent
``g = dL/dy = [[1, 2], [3, 4]]`` the figure shows, with every cell labelled:

* the forward pass, ``y = sum_c x[c] * w[c] + b`` (one correlation per channel, summed);
* the bias gradient ``db = sum g`` (a sum: ``b`` was added to all four outputs);
* the weight gradient ``dw[c] = x[c] * g`` (the input correlated with the cotangent);
* the input gradient ``dx[c]``: the cotangent padded by ``k - 1 = 1`` and
  correlated with the kernel flipped in space (and, with several output
  channels, with its channel axes swapped: ``convgrad.flip_and_swap``).

The numbers are convgrad's (``jax.vjp`` of ``convgrad.conv``, the hand-derived
VJP). The script checks them against ``jax.grad`` of a plain-lax convolution
(``convgrad.autodiff.conv``, differentiated by JAX) and against the explicit
formulas above, and asserts that all agree exactly (the values are small
integers, exact in float32).

    PYTHONPATH=. python -m experiments.conv_gradients
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

NAME = "conv_gradients"


def seed_example() -> dict[str, jax.Array]:
    """The numbers of docs/derivations.md: ``x (1, 3, 3, 3)``, ``w (1, 3, 2, 2)``, ``b (1,)``, ``g (1, 1, 2, 2)``."""
    x = jnp.arange(27.0, dtype=jnp.float32).reshape(1, 3, 3, 3)
    w = jnp.array([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]], [[-1.0, 0.0], [0.0, 2.0]]]], dtype=jnp.float32)
    b = jnp.array([0.5], dtype=jnp.float32)
    g = jnp.array([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=jnp.float32)
    return {"x": x, "w": w, "b": b, "g": g}


def compute(example: dict[str, jax.Array]) -> dict[str, Any]:
    """convgrad's forward and gradients, the jax.grad reference, the explicit formulas, and their differences."""
    x, w, b, g = example["x"], example["w"], example["b"], example["g"]
    y, vjp = jax.vjp(convgrad.conv, x, w, b)
    dx, dw, db = vjp(g)

    # Reference: jax.grad of <g, y> through the plain-lax convolution (JAX's own transpose rules).
    ref_dx, ref_dw, ref_db = jax.grad(lambda x, w, b: jnp.sum(g * autodiff.conv(x, w, b)), argnums=(0, 1, 2))(x, w, b)

    # The formulas, written out with plain lax (no autodiff).
    k = w.shape[-1]
    g_pad = jnp.pad(g, ((0, 0), (0, 0), (k - 1, k - 1), (k - 1, k - 1)))
    w_t = convgrad.flip_and_swap(w)  # (C, O, kh, kw), flipped in space
    formula_dx = lax.conv_general_dilated(g_pad, w_t, (1, 1), "VALID")
    # dw[o, c] = x[c] correlated with g[o]: the batch is the contracted axis, so swap batch and channels.
    formula_dw = lax.conv_general_dilated(jnp.swapaxes(x, 0, 1), jnp.swapaxes(g, 0, 1), (1, 1), "VALID").swapaxes(0, 1)
    formula_db = jnp.sum(g, axis=(0, 2, 3))

    checks = {}
    for name, ours, reference, formula in (
        ("input_grad", dx, ref_dx, formula_dx),
        ("weight_grad", dw, ref_dw, formula_dw),
        ("bias_grad", db, ref_db, formula_db),
    ):
        checks[name] = {
            "max_abs_difference_vs_jax_grad": float(jnp.max(jnp.abs(ours - reference))),
            "max_abs_difference_vs_formula": float(jnp.max(jnp.abs(ours - formula))),
            "equal": bool(jnp.array_equal(ours, reference) and jnp.array_equal(ours, formula)),
        }
    return {
        "y": y,
        "input_grad": dx,
        "weight_grad": dw,
        "bias_grad": db,
        "g_padded": g_pad,
        "flipped_kernel": w_t,
        "checks": checks,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = common.parser(__doc__.split("\n\n")[0]).parse_args(argv)
    example = seed_example()
    computed = compute(example)
    for name, check in computed["checks"].items():
        assert check["equal"], f"{name}: convgrad differs from jax.grad or from the formula: {check}"
    print(
        "convgrad's hand-derived VJP agrees exactly with jax.grad of the plain-lax convolution and with the "
        "explicit formulas: "
        + ", ".join(
            f"{n} max |difference| {c['max_abs_difference_vs_jax_grad']:g}" for n, c in computed["checks"].items()
        )
    )
    results = {
        "example": {k: np.asarray(v) for k, v in example.items()},
        **{k: (np.asarray(v) if k != "checks" else v) for k, v in computed.items()},
    }
    common.write_json(args.out, NAME, results)
    plot(example, computed, args.out)
    return results


def plot(example: dict[str, jax.Array], computed: dict[str, Any], out) -> None:
    x, w, b, g = (np.asarray(example[k]) for k in ("x", "w", "b", "g"))
    y, dx, dw, db = (np.asarray(computed[k]) for k in ("y", "input_grad", "weight_grad", "bias_grad"))
    g_pad, w_t = np.asarray(computed["g_padded"]), np.asarray(computed["flipped_kernel"])
    fig = common.plt.figure(figsize=(15, 8.4))
    grid = fig.add_gridspec(3, 7, hspace=0.45, wspace=0.35, left=0.1)
    norms = {
        "x": common.symmetric_norm(x),
        "w": common.symmetric_norm(w, w_t),
        "y": common.symmetric_norm(y),
        "g": common.symmetric_norm(g, g_pad, db),
        "dw": common.symmetric_norm(dw),
        "dx": common.symmetric_norm(dx),
    }

    def panel(row, col, values, title, norm, fmt="{:g}"):
        return common.annotated_grid(
            fig.add_subplot(grid[row, col]), values, title=title, norm=norm, fmt=fmt, fontsize=10
        )

    # Row 0: the forward pass.
    for c in range(3):
        panel(0, c, x[0, c], f"x[c={c}]", norms["x"])
        panel(0, 3 + c, w[0, c], f"w[c={c}]", norms["w"])
    panel(0, 6, y[0, 0], f"y = sum_c x[c] * w[c] + b\n(b = {b[0]:g})", norms["y"])
    # Row 1: the cotangent, the bias and the weight gradient.
    panel(1, 0, g[0, 0], "cotangent g = dL/dy", norms["g"])
    panel(1, 1, db.reshape(1, 1), "db = sum of g\n= 1 + 2 + 3 + 4", norms["g"])
    for c in range(3):
        panel(1, 2 + c, dw[0, c], f"dw[c={c}] = x[c={c}] * g", norms["dw"])
    ax = fig.add_subplot(grid[1, 5:])
    ax.axis("off")
    ax.text(
        0.0,
        0.5,
        "Weight gradient: slide g (2x2) over x[c]\n"
        "as if g were the kernel. Each tap w[c, i, j]\n"
        "met the input pixels x[c, i:i+2, j:j+2],\n"
        "each weighted by its output's cotangent.\n\n"
        f"dw[c=1][0, 0] = 9*1 + 10*2 + 12*3 + 13*4 = {dw[0, 1, 0, 0]:g}",
        fontsize=10,
        va="center",
        family="monospace",
    )
    # Row 2: the input gradient as a convolution of the padded cotangent with the flipped kernel.
    panel(2, 0, g_pad[0, 0], "g padded by k - 1 = 1", norms["g"])
    for c in range(3):
        panel(2, 1 + c, w_t[c, 0], f"w[c={c}] flipped", norms["w"])
        panel(2, 4 + c, dx[0, c], f"dx[c={c}] =\npad(g) * flip(w[c={c}])", norms["dx"])
    checks = computed["checks"]
    agreement = "; ".join(f"{n}: max |diff| {c['max_abs_difference_vs_jax_grad']:g}" for n, c in checks.items())
    fig.suptitle(
        "Gradients of a multi-channel convolution (3 channels, 3x3 input, one 2x2x3 filter, stride 1), "
        "computed by convgrad\n"
        "'*' is cross-correlation (slide, multiply, sum). Colour: each quantity on its own scale, red > 0 > blue.\n"
        f"Checked against jax.grad of a plain-lax convolution: identical ({agreement})",
        fontsize=11,
    )
    fig.text(
        0.5,
        0.02,
        "Input gradient: each pixel collects g through every tap that read it. As a convolution: "
        "slide the flipped kernel over the padded cotangent, e.g. "
        f"dx[c=0][1, 1] = 1*4 + 2*3 + 3*2 + 4*1 = {dx[0, 0, 1, 1]:g}",
        fontsize=10,
        ha="center",
    )
    for row, label in enumerate(("forward", "backward:\nbias, weights", "backward:\ninput")):
        box = grid[row, 0].get_position(fig)
        fig.text(0.05, (box.y0 + box.y1) / 2, label, fontsize=12, rotation=90, va="center", ha="center", weight="bold")
    common.save_figure(fig, out, NAME, palette=True)


if __name__ == "__main__":
    main()

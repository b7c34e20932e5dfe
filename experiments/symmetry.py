"""How do hidden units learn different features? Symmetry breaking in a one-hidden-layer MLP.

The network is ``784 -> H -> 10``, ``h = relu(x W1 + b1)``, ``logits = h W2 + b2``,
trained with plain SGD (``theta <- theta - lr * dL/dtheta``) from three starts:

(a) ``symmetric``: every hidden unit gets the SAME small random incoming weights
    (one vector copied into every column of ``W1``) and the same outgoing
    weights (one row copied into every row of ``W2``). Units that compute the
    same thing receive the same gradient, so they stay identical forever (in float32,
    up to rounding: XLA:CPU need not round every row of one product alike): the
    network has one feature, repeated H times. It is exactly a one-unit network:
    with ``W2 -> H W2`` and learning rates ``lr / H`` for ``(W1, b1)`` and
    ``lr H`` for ``W2``, SGD on one unit follows the same function step by step
    (the ``one_unit`` run checks this).
(b) ``zero``: every weight and bias 0. Then ``x W1 + b1 = 0``, so ``h = relu(0) =
    0`` and the logits are ``b2``. The gradients: ``dW2 = h^T g = 0`` (h is 0);
    ``dh = g W2^T = 0`` (W2 is 0), and even a nonzero ``dh`` would be masked by
    ``relu'(0) = 0``, so ``dW1 = db1 = 0``; only ``db2 = sum g`` is nonzero. So
    ONLY the output biases ever move, and the network predicts the same class
    for every image. (With a sigmoid, ``h = 0.5``: ``W2`` moves from step 1 and
    ``W1`` from step 2, but identically for every unit: zero init is then case
    (a). The ``zero_sigmoid`` run shows it.)
(c) ``random``: independent small random weights. Different units get different
    gradients, drift apart and learn different features.

Every ``--log-every`` steps the script records the largest difference between
any two hidden units' incoming weights (``max_i (max_j - min_j) [W1; b1][i, j]``),
the same for how far they have moved since the start (``[W1 - W1_0; b1 - b1_0]``)
and for their outgoing weights, the test accuracy, and each parameter group's
norm and distance from its initial value.

Plain SGD rather than Adam: Adam divides each parameter's step by a running
RMS of its own gradient, so a weight with a gradient of 1e-6 moves about as far
per step as one with a gradient of 1 and the curves would show step counts, not
gradients. With SGD the distance a group travels is proportional to its
gradients. (The exact zeros hold under Adam too: a zero or identical gradient
gives a zero or identical Adam step.)

    PYTHONPATH=. python -m experiments.symmetry --data-dir /path/to/mnist
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import convgrad
from experiments import common

NAME = "symmetry"
GROUPS = ("w1", "b1", "w2", "b2")
CASES = {
    "symmetric": "(a) identical units",
    "zero": "(b) all zero",
    "random": "(c) random small",
    "zero_sigmoid": "(b') all zero, sigmoid hidden",
    "one_unit": "one hidden unit, equivalent learning rates",
}


def initial_params(case: str, hidden: int, scale: float, seed: int) -> dict[str, jax.Array]:
    """The starting point of ``case`` (see the module docstring); weights ``N(0, scale^2)``, biases 0."""
    rng = np.random.default_rng(seed)
    if case in ("symmetric", "one_unit"):
        w1 = np.tile(rng.standard_normal((784, 1), np.float32) * scale, (1, hidden))
        w2 = np.tile(rng.standard_normal((1, 10), np.float32) * scale, (hidden, 1))
    elif case in ("zero", "zero_sigmoid"):
        w1, w2 = np.zeros((784, hidden), np.float32), np.zeros((hidden, 10), np.float32)
    else:
        w1 = rng.standard_normal((784, hidden), np.float32) * scale
        w2 = rng.standard_normal((hidden, 10), np.float32) * scale
    if case == "one_unit":  # the symmetric network's unit, carrying all H outgoing copies
        w1, w2 = w1[:, :1], hidden * w2[:1]
    params = {"w1": w1, "b1": np.zeros(w1.shape[1], np.float32), "w2": w2, "b2": np.zeros(10, np.float32)}
    return {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}


def apply_mlp(params: dict[str, jax.Array], images: jax.Array, activation: str = "relu") -> jax.Array:
    """Logits of ``784 -> H -> 10`` with a ReLU (or sigmoid) hidden layer, from convgrad ops."""
    h = convgrad.dense(images.reshape(images.shape[0], -1), params["w1"], params["b1"])
    h = convgrad.relu(h) if activation == "relu" else convgrad.sigmoid(h)
    return convgrad.dense(h, params["w2"], params["b2"])


def sgd(learning_rates: dict[str, float]) -> optax.GradientTransformation:
    """Plain SGD, ``theta <- theta - lr[group] * dL/dtheta``, with a learning rate per parameter group."""
    return optax.multi_transform({group: optax.sgd(lr) for group, lr in learning_rates.items()}, {g: g for g in GROUPS})


def unit_difference(w: jax.Array, b: jax.Array | None = None) -> float:
    """Largest difference between any two units' weight vectors, ``max_i (max_j - min_j) w[i, j]`` (units = columns)."""
    stacked = w if b is None else jnp.concatenate([w, b[None]], axis=0)
    return float(jnp.max(jnp.max(stacked, axis=1) - jnp.min(stacked, axis=1)))


def measure(params, initial, predict, dataset) -> dict[str, Any]:
    """What is logged every ``--log-every`` steps: unit differences, test accuracy, each group's norm and motion."""
    record = {
        "unit_difference": unit_difference(params["w1"], params["b1"]),
        "update_unit_difference": unit_difference(params["w1"] - initial["w1"], params["b1"] - initial["b1"]),
        "outgoing_unit_difference": unit_difference(params["w2"].T),
        "test_accuracy": common.accuracy(predict, params, dataset.test_x, dataset.test_y),
    }
    for group in GROUPS:
        record[f"norm_{group}"] = float(jnp.linalg.norm(params[group]))
        record[f"change_{group}"] = float(jnp.linalg.norm(params[group] - initial[group]))
    return record


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.split("\n\n")[0], epochs=5)
    p.add_argument("--hidden", type=int, default=64, help="hidden units H")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (constant)")
    p.add_argument("--scale", type=float, default=0.01, help="standard deviation of the small random weights")
    p.add_argument("--log-every", type=int, default=50, help="steps between measurements")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.hidden, args.batch_size, args.log_every = 1, 8, 32, 4
    dataset, source = common.load_data(args)

    results: dict[str, Any] = {
        "data": source,
        "settings": {
            k: getattr(args, k) for k in ("quick", "epochs", "hidden", "batch_size", "lr", "scale", "log_every", "seed")
        },
        "most_common_class_fraction": common.most_common_class_fraction(dataset.test_y),
        "cases": {},
    }
    final_params = {}
    for case, description in CASES.items():
        activation = "sigmoid" if case == "zero_sigmoid" else "relu"

        def apply(params, images, activation=activation):
            return apply_mlp(params, images, activation)

        learning_rates = dict.fromkeys(GROUPS, args.lr)
        if case == "one_unit":
            learning_rates.update(w1=args.lr / args.hidden, b1=args.lr / args.hidden, w2=args.lr * args.hidden)
        predict = jax.jit(apply)
        initial = initial_params(case, args.hidden, args.scale, args.seed)
        optimizer = sgd(learning_rates)
        params, history = common.fit(
            common.classifier_step(apply, optimizer),
            common.initial_state(initial, optimizer),
            dataset,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            log_every=args.log_every,
            measure=lambda params, initial=initial, predict=predict: measure(params, initial, predict, dataset),
        )
        singular_values = np.linalg.svd(np.asarray(params["w1"], np.float64), compute_uv=False)
        results["cases"][case] = {
            "description": description,
            "activation": activation,
            "learning_rates": learning_rates,
            "test_accuracy": history[-1]["test_accuracy"],
            "max_unit_difference": max(r["unit_difference"] for r in history),
            "first_layer_rank": int(np.sum(singular_values > 1e-5 * max(singular_values[0], 1e-30))),
            "history": history,
        }
        final_params[case] = params
        moved = [g for g in GROUPS if history[-1][f"change_{g}"] > 0]
        print(
            f"{case:13s} test {history[-1]['test_accuracy']:.4f}  max unit difference "
            f"{results['cases'][case]['max_unit_difference']:.3g}  moved: {', '.join(moved) or 'nothing'}"
        )

    # (a) is a one-unit network: compare the two runs' functions on the test set.
    logits_symmetric = np.asarray(apply_mlp(final_params["symmetric"], dataset.test_x), np.float64)
    logits_one_unit = np.asarray(apply_mlp(final_params["one_unit"], dataset.test_x), np.float64)
    results["symmetric_vs_one_unit"] = {
        "max_relative_logit_difference": float(
            np.max(np.abs(logits_symmetric - logits_one_unit)) / np.max(np.abs(logits_symmetric))
        ),
        "same_prediction": float(np.mean(logits_symmetric.argmax(1) == logits_one_unit.argmax(1))),
    }
    print("symmetric vs one unit:", results["symmetric_vs_one_unit"])

    common.write_json(args.out, NAME, results)
    plot_curves(results, args.out)
    plot_weights(final_params, results, args.out)
    return results


COLORS = {
    "symmetric": "tab:red",
    "zero": "tab:gray",
    "random": "tab:blue",
    "zero_sigmoid": "tab:purple",
    "one_unit": "black",
}


def plot_curves(results: dict[str, Any], out) -> None:
    cases = results["cases"]
    fig, (ax_diff, ax_acc, ax_change) = common.plt.subplots(1, 3, figsize=(15, 4.3))
    for case, style in (("random", "-"), ("symmetric", "-"), ("zero", "--")):
        history = cases[case]["history"]
        steps = [r["step"] for r in history]
        label = f"{cases[case]['description']}: max {cases[case]['max_unit_difference']:.3g} over {len(history)} logs"
        ax_diff.plot(
            steps,
            [r["unit_difference"] for r in history],
            color=COLORS[case],
            label=label,
            linewidth=3.5 if case == "symmetric" else 2,
            linestyle=style,
        )
    ax_diff.set(
        xlabel="SGD step",
        ylabel="max over units j, k of max_i |W1[i, j] - W1[i, k]|",
        title="Largest difference between two hidden units'\nincoming weights (incl. bias)",
    )
    ax_diff.legend(fontsize=8)
    ax_diff.grid(alpha=0.3)

    for case in ("random", "symmetric", "one_unit", "zero"):
        history = cases[case]["history"]
        style = {"linestyle": ":", "linewidth": 2.5} if case == "one_unit" else {"linewidth": 2}
        ax_acc.plot(
            [r["step"] for r in history],
            [100 * r["test_accuracy"] for r in history],
            color=COLORS[case],
            label=f"{cases[case]['description']}: {100 * cases[case]['test_accuracy']:.1f}%",
            **style,
        )
    ax_acc.axhline(100 * results["most_common_class_fraction"], color="tab:gray", linestyle="--", linewidth=1)
    ax_acc.text(
        steps[-1] / 3,
        100 * results["most_common_class_fraction"] + 1.5,
        "always predicting the most common class",
        fontsize=8,
        color="tab:gray",
    )
    ax_acc.set(
        xlabel="SGD step", ylabel="test accuracy (%)", title="Test accuracy (final value in the legend)", ylim=(0, 100)
    )
    ax_acc.legend(fontsize=8, loc="center right")
    ax_acc.grid(alpha=0.3)

    history = cases["zero"]["history"]
    for group, color in zip(GROUPS, ("tab:green", "tab:olive", "tab:cyan", "tab:brown")):
        ax_change.plot(
            [r["step"] for r in history],
            [r[f"change_{group}"] for r in history],
            color=color,
            linewidth=2,
            label=f"{group}: final {history[-1][f'change_{group}']:.3g}",
        )
    ax_change.set(
        xlabel="SGD step",
        ylabel="||theta_t - theta_0|| per parameter group",
        title="(b) all-zero init: how far each parameter group\nhas moved from its start",
    )
    ax_change.set_ylim(top=1.4 * max(r["change_b2"] for r in history) or 1.0)
    ax_change.legend(fontsize=8, ncol=2, loc="upper left")
    ax_change.grid(alpha=0.3)
    settings = results["settings"]
    fig.suptitle(
        f"Symmetry breaking, 784 -> {settings['hidden']} (ReLU) -> 10, plain SGD lr {settings['lr']:g}, "
        f"batch {settings['batch_size']}, init scale {settings['scale']:g}, {results['data']}",
        fontsize=11,
    )
    fig.tight_layout()
    common.save_figure(fig, out, f"{NAME}_curves")


def plot_weights(final_params: dict[str, dict[str, jax.Array]], results: dict[str, Any], out, units: int = 16) -> None:
    units = min(units, final_params["random"]["w1"].shape[1])
    columns = min(units, 8)
    rows = -(-units // columns)
    fig, axes = common.plt.subplots(
        2 * rows, columns, figsize=(1.45 * columns + 1, 1.6 * 2 * rows + 0.6), squeeze=False
    )
    for block, case in enumerate(("symmetric", "random")):
        w1 = np.asarray(final_params[case]["w1"])
        norm = common.symmetric_norm(w1[:, :units])
        for u in range(rows * columns):
            ax = axes[block * rows + u // columns, u % columns]
            ax.set_xticks([])
            ax.set_yticks([])
            if u >= units:
                ax.axis("off")
                continue
            image = ax.imshow(w1[:, u].reshape(28, 28), cmap="RdBu_r", norm=norm)
            ax.set_title(f"unit {u}", fontsize=8)
        axes[block * rows, 0].set_ylabel(results["cases"][case]["description"], fontsize=9)
        fig.colorbar(image, ax=axes[block * rows : (block + 1) * rows].ravel().tolist(), shrink=0.8, label="weight")
    fig.suptitle(
        f"Learned incoming weights W1[:, j] of the first {units} of {final_params['random']['w1'].shape[1]} "
        "hidden units, as 28x28 images\n"
        "top: identical init (every unit the same image); bottom: random init (different features)",
        fontsize=10,
    )
    common.save_figure(fig, out, f"{NAME}_weights")


if __name__ == "__main__":
    main()

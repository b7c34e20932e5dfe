"""How many layers? Softmax regression vs one and two hidden layers, with and without a nonlinearity.

A hidden layer without a nonlinearity computes ``h = x W1 + b1``, and the next
layer ``h W2 + b2 = x (W1 W2) + (b1 W2 + b2)``: the whole network is still ONE
affine map of the pixels, i.e. a linear classifier, however many such layers it
has. So its accuracy cannot rise above what softmax regression reaches (it can
differ only through optimization). With a ReLU between the layers the network
is no longer affine, and accuracy rises.

The script trains five networks on the same data with the same recipe (Adam,
cosine-decayed learning rate, the recipe of ``convgrad train``), every gradient
from convgrad's hand-derived VJPs, and checks the collapse numerically: for each
network without a nonlinearity it multiplies its layers into one matrix and
one bias and compares that linear classifier's logits with the network's.

    PYTHONPATH=. python -m experiments.layers --data-dir /path/to/mnist
"""

from __future__ import annotations

import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import convgrad
from experiments import common

NAME = "layers"
# name -> (hidden layer sizes as multiples of --hidden, activation)
NETWORKS = {
    "linear": (0, "identity"),
    "1 hidden, identity": (1, "identity"),
    "1 hidden, relu": (1, "relu"),
    "2 hidden, identity": (2, "identity"),
    "2 hidden, relu": (2, "relu"),
}
# A collapsed network and the network differ only by float32 rounding in sums of ~800 products.
COLLAPSE_RTOL = 1e-4


def init_mlp(seed: int, sizes: tuple[int, ...], activation: str) -> list[dict[str, jax.Array]]:
    """Dense layers ``sizes[0] -> ... -> sizes[-1]``, zero biases.

    Weights are He-normal (variance ``2 / fan_in``) before a ReLU, variance-preserving (``1 / fan_in``) otherwise.
    """
    rng = np.random.default_rng(seed)
    last = len(sizes) - 2
    return [
        {
            "w": common.he_normal(rng, (n_in, n_out), n_in, gain=2.0 if activation == "relu" and i < last else 1.0),
            "b": jnp.zeros((n_out,), jnp.float32),
        }
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes))
    ]


def apply_mlp(params: list[dict[str, jax.Array]], images: jax.Array, activation: str) -> jax.Array:
    """Logits ``(N, 10)``: dense layers from convgrad, with ``activation`` (``relu`` or none) between them."""
    h = images.reshape(images.shape[0], -1)
    for i, layer in enumerate(params):
        h = convgrad.dense(h, layer["w"], layer["b"])
        if i < len(params) - 1 and activation == "relu":
            h = convgrad.relu(h)
    return h


def collapse(params: list[dict[str, jax.Array]]) -> tuple[np.ndarray, np.ndarray]:
    """The single affine map ``(W, b)`` a network without nonlinearities computes, in float64."""
    w = np.eye(params[0]["w"].shape[0])
    b = np.zeros(params[0]["w"].shape[0])
    for layer in params:
        w_l, b_l = np.asarray(layer["w"], np.float64), np.asarray(layer["b"], np.float64)
        w, b = w @ w_l, b @ w_l + b_l
    return w, b


def collapse_check(params: list[dict[str, jax.Array]], images: jax.Array) -> dict[str, float]:
    """How far the network's logits are from those of its collapsed linear classifier (normwise, relative)."""
    w, b = collapse(params)
    flat = np.asarray(images, np.float64).reshape(images.shape[0], -1)
    linear_logits = flat @ w + b
    logits = np.asarray(apply_mlp(params, images, "identity"), np.float64)
    return {
        "max_abs_logit": float(np.max(np.abs(linear_logits))),
        "relative_error": float(np.max(np.abs(logits - linear_logits)) / np.max(np.abs(linear_logits))),
        "same_prediction": float(np.mean(np.argmax(logits, 1) == np.argmax(linear_logits, 1))),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.split("\n\n")[0], epochs=10)
    p.add_argument("--hidden", type=int, default=512, help="width of each hidden layer")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam's peak learning rate (cosine-decayed to 0)")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.hidden = min(args.epochs, 2), 32
    dataset, source = common.load_data(args)
    steps_per_epoch = dataset.train_x.shape[0] // args.batch_size

    results: dict[str, Any] = {
        "data": source,
        "settings": {k: getattr(args, k) for k in ("quick", "epochs", "hidden", "batch_size", "lr", "seed")},
        "most_common_class_fraction": common.most_common_class_fraction(dataset.test_y),
        "networks": {},
    }
    for name, (depth, activation) in NETWORKS.items():
        sizes = (784, *(args.hidden,) * depth, 10)

        def apply(params, images, activation=activation):
            return apply_mlp(params, images, activation)

        predict = jax.jit(apply)
        optimizer = optax.adam(optax.cosine_decay_schedule(args.lr, args.epochs * steps_per_epoch))
        params = init_mlp(args.seed, sizes, activation)
        params, history = common.fit(
            common.classifier_step(apply, optimizer),
            common.initial_state(params, optimizer),
            dataset,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            measure=lambda params, predict=predict: {
                "test_accuracy": common.accuracy(predict, params, dataset.test_x, dataset.test_y)
            },
        )
        record = {
            "sizes": sizes,
            "activation": activation,
            "parameters": int(sum(x.size for x in jax.tree.leaves(params))),
            "test_accuracy": history[-1]["test_accuracy"],
            "train_accuracy": common.accuracy(predict, params, dataset.train_x, dataset.train_y),
            "history": history,
        }
        if activation == "identity" and depth > 0:
            record["collapse"] = collapse_check(params, dataset.test_x)
            error = record["collapse"]["relative_error"]
            assert error <= COLLAPSE_RTOL, f"{name}: logits differ from the collapsed linear map by {error:.2e}"
        results["networks"][name] = record
        print(
            f"{name:20s} test {record['test_accuracy']:.4f}  train {record['train_accuracy']:.4f}"
            + (f"  collapse error {record['collapse']['relative_error']:.1e}" if "collapse" in record else "")
        )

    common.write_json(args.out, NAME, results)
    plot(results, args.out)
    return results


STYLE = {
    "linear": {"color": "black", "linestyle": "-", "linewidth": 2.5},
    "1 hidden, identity": {"color": "tab:blue", "linestyle": "--"},
    "1 hidden, relu": {"color": "tab:blue", "linestyle": "-"},
    "2 hidden, identity": {"color": "tab:orange", "linestyle": "--"},
    "2 hidden, relu": {"color": "tab:orange", "linestyle": "-"},
}


def plot(results: dict[str, Any], out) -> None:
    fig, (ax_acc, ax_loss) = common.plt.subplots(1, 2, figsize=(11, 4.2))
    for name, record in results["networks"].items():
        history = record["history"][1:]  # from the end of epoch 1 (at step 0 every network is at chance)
        epochs = [r["epoch"] for r in history]
        label = f"{name} ({100 * record['test_accuracy']:.2f}%)"
        ax_acc.plot(
            epochs, [100 * r["test_accuracy"] for r in history], marker="o", markersize=3, label=label, **STYLE[name]
        )
        ax_loss.plot(epochs, [r["train_loss"] for r in history], marker="o", markersize=3, **STYLE[name])
    lowest = min(100 * r["test_accuracy"] for record in results["networks"].values() for r in record["history"][1:])
    ax_acc.set_ylim(max(0.0, lowest - 1), 100)
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="Test accuracy after each epoch")
    ax_acc.grid(alpha=0.3)
    ax_loss.set_yscale("log")
    ax_loss.set(xlabel="epoch", ylabel="mean training loss over the epoch", title="Training loss (cross-entropy)")
    ax_loss.grid(alpha=0.3, which="both")
    fig.legend(*ax_acc.get_legend_handles_labels(), loc="lower center", ncol=5, fontsize=9, title="final test accuracy")
    settings = results["settings"]
    fig.suptitle(
        "Black: softmax regression. Dashed: hidden layers with no nonlinearity (still an affine map). "
        "Solid: ReLU hidden layers\n"
        f"{results['data']}, hidden width {settings['hidden']}, Adam lr {settings['lr']:g} cosine, "
        f"batch {settings['batch_size']}",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    common.save_figure(fig, out, f"{NAME}_accuracy")


if __name__ == "__main__":
    main()

"""A Flax NNX convnet trained on convgrad's hand-derived VJPs, by one argument to ``nnx.Conv``.

``nnx.Conv`` (and ``linen.Conv``) computes its convolution with the function passed as
``conv_general_dilated=`` (default ``jax.lax.conv_general_dilated``). Passing
``convgrad.lax.conv_general_dilated``, which has exactly lax's signature, makes every
convolution gradient of the model convgrad's verified backward (on CPU through its faster
formulations). Nothing else changes: the kernels stay Flax's ``(kh, kw, in, out)`` (HWIO)
arrays with Flax's initializers, the inputs channels-last ``(N, H, W, C)``.

Run from the repository root (``pip install ".[flax]"``)::

    PYTHONPATH=. python docs/examples/flax_mnist.py --data-dir /path/to/mnist --steps 300

It prints the test accuracy and the largest difference between the gradients of the same
model built with convgrad's convolution and with lax's; ``tests/test_examples.py`` runs it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import convgrad
from convgrad import data


class CNN(nnx.Module):
    """conv 3x3x16 - relu - maxpool 2 - conv 3x3x32 - relu - maxpool 2 - dense 10, channels-last."""

    def __init__(self, conv_general_dilated: Callable, rngs: nnx.Rngs):
        conv = dict(kernel_size=(3, 3), padding="SAME", conv_general_dilated=conv_general_dilated, rngs=rngs)
        self.conv1 = nnx.Conv(1, 16, **conv)
        self.conv2 = nnx.Conv(16, 32, **conv)
        self.dense = nnx.Linear(7 * 7 * 32, 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        pool = lambda h: convgrad.max_pool(h, 2, channel_axis=-1)[0]
        h = pool(jax.nn.relu(self.conv1(x)))
        h = pool(jax.nn.relu(self.conv2(h)))
        return self.dense(h.reshape(h.shape[0], -1))


def loss_fn(model: CNN, x: jax.Array, y: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


@nnx.jit
def train_step(model: CNN, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> jax.Array:
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def predict(model: CNN, x: jax.Array) -> jax.Array:
    return jnp.argmax(model(x), axis=-1)


def gradients(conv_general_dilated: Callable, x: jax.Array, y: jax.Array, seed: int = 0):
    """The parameter gradients of a fresh model (the same initial parameters for a given seed)."""
    model = CNN(conv_general_dilated, nnx.Rngs(seed))
    return nnx.grad(loss_fn)(model, x, y)


def max_gradient_difference(x: jax.Array, y: jax.Array) -> float:
    """Largest normwise relative difference, over the parameters, of convgrad's gradients and lax's."""
    ours = jax.tree.leaves(gradients(convgrad.lax.conv_general_dilated, x, y))
    theirs = jax.tree.leaves(gradients(jax.lax.conv_general_dilated, x, y))
    return max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) for a, b in zip(ours, theirs))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="MNIST directory (default: $CONVGRAD_DATA or the cache)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    train_x, train_y, test_x, test_y = data.prepare(data.load_mnist(args.data_dir, progress=False))
    train_x, test_x = train_x[..., None], test_x[..., None]  # NHWC
    model = CNN(convgrad.lax.conv_general_dilated, nnx.Rngs(args.seed))
    optimizer = nnx.Optimizer(model, optax.adam(args.lr), wrt=nnx.Param)
    rng = np.random.default_rng(args.seed)
    losses = []
    for _ in range(args.steps):
        batch = rng.integers(0, len(train_x), args.batch_size)
        losses.append(float(train_step(model, optimizer, jnp.asarray(train_x[batch]), jnp.asarray(train_y[batch]))))
    correct = sum(
        int(jnp.sum(predict(model, jnp.asarray(test_x[i : i + 1000])) == test_y[i : i + 1000]))
        for i in range(0, len(test_x), 1000)
    )
    result = {
        "steps": args.steps,
        "test_accuracy": correct / len(test_x),
        "final_loss": float(np.mean(losses[-20:])),
        "max_gradient_difference_vs_lax": max_gradient_difference(
            jnp.asarray(train_x[: args.batch_size]), jnp.asarray(train_y[: args.batch_size])
        ),
    }
    print(result)
    return result


if __name__ == "__main__":
    main()

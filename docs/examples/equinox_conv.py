"""An Equinox convnet on ``convgrad.conv``: a ``Conv2d`` module written in six lines, used like ``eqx.nn.Conv2d``.

Equinox layers take one example, ``(C, H, W)``, and are ``jax.vmap``-ed over the batch.
``convgrad.conv`` accepts that unbatched input (PyTorch's rule: one axis fewer than the
kernel) and its hand-derived VJP runs under ``vmap``; its kernel is ``(O, C, kh, kw)`` (OIHW),
the same as ``eqx.nn.Conv2d.weight`` (whose bias is ``(O, 1, 1)``; here ``(O,)``).

Run from the repository root (``pip install ".[equinox]"``)::

    PYTHONPATH=. python docs/examples/equinox_conv.py --data-dir /path/to/mnist --steps 300

``tests/test_examples.py`` checks that this ``Conv2d`` and ``eqx.nn.Conv2d`` with the same
parameters agree in value and gradient, and runs a few training steps.
"""

from __future__ import annotations

import argparse

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import convgrad
from convgrad import data


class Conv2d(eqx.Module):
    """``convgrad.conv`` of one ``(C, H, W)`` example; PyTorch's default init (uniform, fan-in ``C kh kw``)."""

    weight: jax.Array  # (O, C, kh, kw)
    bias: jax.Array  # (O,)
    padding: int = eqx.field(static=True)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int, *, key: jax.Array):
        w_key, b_key = jax.random.split(key)
        bound = 1 / np.sqrt(in_channels * kernel_size * kernel_size)
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight = jax.random.uniform(w_key, shape, minval=-bound, maxval=bound)
        self.bias = jax.random.uniform(b_key, (out_channels,), minval=-bound, maxval=bound)
        self.padding = padding

    def __call__(self, x: jax.Array) -> jax.Array:
        return convgrad.conv(x, self.weight, self.bias, padding=self.padding)


class CNN(eqx.Module):
    conv1: Conv2d
    conv2: Conv2d
    dense: eqx.nn.Linear

    def __init__(self, key: jax.Array):
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = Conv2d(1, 16, 3, 1, key=k1)
        self.conv2 = Conv2d(16, 32, 3, 1, key=k2)
        self.dense = eqx.nn.Linear(32 * 7 * 7, 10, key=k3)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits of one ``(1, 28, 28)`` image."""
        pool = lambda h: convgrad.max_pool(h[None], 2)[0][0]  # max_pool takes a batch
        h = pool(jax.nn.relu(self.conv1(x)))
        h = pool(jax.nn.relu(self.conv2(h)))
        return self.dense(h.ravel())


def loss_fn(model: CNN, x: jax.Array, y: jax.Array) -> jax.Array:
    logits = jax.vmap(model)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def make_step(optimizer: optax.GradientTransformation):
    @eqx.filter_jit
    def step(model, state, x, y):
        loss, grads = eqx.filter_value_and_grad(loss_fn)(model, x, y)
        updates, state = optimizer.update(grads, state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), state, loss

    return step


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    train_x, train_y, test_x, test_y = data.prepare(data.load_mnist(args.data_dir, progress=False))
    train_x, test_x = train_x[:, None], test_x[:, None]  # (N, 1, 28, 28): each example (C, H, W)
    model = CNN(jax.random.key(args.seed))
    optimizer = optax.adam(args.lr)
    state = optimizer.init(eqx.filter(model, eqx.is_array))
    step = make_step(optimizer)
    rng = np.random.default_rng(args.seed)
    for _ in range(args.steps):
        batch = rng.integers(0, len(train_x), args.batch_size)
        model, state, loss = step(model, state, jnp.asarray(train_x[batch]), jnp.asarray(train_y[batch]))
    predict = eqx.filter_jit(lambda model, x: jnp.argmax(jax.vmap(model)(x), axis=-1))
    correct = sum(
        int(jnp.sum(predict(model, jnp.asarray(test_x[i : i + 1000])) == test_y[i : i + 1000]))
        for i in range(0, len(test_x), 1000)
    )
    result = {"steps": args.steps, "test_accuracy": correct / len(test_x), "final_loss": float(loss)}
    print(result)
    return result


if __name__ == "__main__":
    main()

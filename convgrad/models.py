"""MNIST models as pure ``init(key) -> params`` / ``apply(params, x) -> logits`` functions.

Every architecture is written once, against a :class:`Kit` of layer ops. The
``custom`` kit is convgrad's hand-derived VJPs; the ``autodiff`` kit is the same
ops in plain lax (:mod:`convgrad.autodiff`), differentiated by ``jax.grad``. So
``--grads custom`` and ``--grads autodiff`` train the very same network and differ
only in where the gradients come from.

Images come in as ``(N, 28, 28)`` float32. The convnet works channels-last
(``NHWC`` / ``HWIO``), the layout XLA's CPU convolutions use natively.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import convgrad
from convgrad import autodiff

Params = dict[str, Any]
CHANNELS_LAST = ("NHWC", "HWIO", "NHWC")


@dataclasses.dataclass(frozen=True)
class Kit:
    """The layer ops a model is built from."""

    name: str
    conv: Callable[..., jax.Array]
    dense: Callable[..., jax.Array]
    relu: Callable[[jax.Array], jax.Array]
    max_pool: Callable[[jax.Array, int], jax.Array]  # channels-last, window = stride, values only
    cross_entropy: Callable[[jax.Array, jax.Array], jax.Array]  # per-example losses


KITS = {
    "custom": Kit(
        name="custom",
        conv=convgrad.conv,
        dense=convgrad.dense,
        relu=convgrad.relu,
        max_pool=lambda x, k: convgrad.max_pool(x, k, channel_axis=-1)[0],
        cross_entropy=convgrad.softmax_cross_entropy,
    ),
    "autodiff": Kit(
        name="autodiff",
        conv=autodiff.conv,
        dense=autodiff.dense,
        relu=autodiff.relu,
        max_pool=lambda x, k: autodiff.max_pool(x, k, channel_axis=-1),
        cross_entropy=autodiff.softmax_cross_entropy,
    ),
}


@dataclasses.dataclass(frozen=True)
class Model:
    """``init(key) -> params`` and ``apply(kit, params, images) -> logits`` of one architecture."""

    name: str
    description: str
    init: Callable[[jax.Array], Params]
    apply: Callable[[Kit, Params, jax.Array], jax.Array]


def dense_init(key: jax.Array, n_in: int, n_out: int, gain: float = 2.0) -> dict[str, jax.Array]:
    """He-normal weights ``(n_in, n_out)`` with variance ``gain / n_in`` and zero biases."""
    w = jax.random.normal(key, (n_in, n_out), jnp.float32) * math.sqrt(gain / n_in)
    return {"w": w, "b": jnp.zeros((n_out,), jnp.float32)}


def conv_init(key: jax.Array, kernel: int, n_in: int, n_out: int) -> dict[str, jax.Array]:
    """He-normal HWIO kernel ``(k, k, n_in, n_out)`` (fan-in ``k * k * n_in``) and zero biases."""
    fan_in = kernel * kernel * n_in
    w = jax.random.normal(key, (kernel, kernel, n_in, n_out), jnp.float32) * math.sqrt(2.0 / fan_in)
    return {"w": w, "b": jnp.zeros((n_out,), jnp.float32)}


def _flat(images: jax.Array) -> jax.Array:
    return images.reshape(images.shape[0], -1)


def _mlp(hidden: tuple[int, ...]) -> tuple[Callable, Callable]:
    sizes = (784, *hidden, 10)

    def init(key):
        keys = jax.random.split(key, len(sizes) - 1)
        last = len(sizes) - 2
        return {
            f"dense{i}": dense_init(k, n_in, n_out, gain=1.0 if i == last else 2.0)
            for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:]))
        }

    def apply(kit, params, images):
        h = _flat(images)
        for i in range(len(sizes) - 1):
            layer = params[f"dense{i}"]
            h = kit.dense(h, layer["w"], layer["b"])
            if i < len(sizes) - 2:
                h = kit.relu(h)
        return h

    return init, apply


def _cnn_init(key):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    return {
        "conv0": conv_init(k1, 3, 1, 32),
        "conv1": conv_init(k2, 3, 32, 64),
        "dense0": dense_init(k3, 7 * 7 * 64, 256),
        "dense1": dense_init(k4, 256, 10, gain=1.0),
    }


def _cnn_apply(kit, params, images):
    h = images[..., None]  # (N, 28, 28, 1)
    for name in ("conv0", "conv1"):
        layer = params[name]
        h = kit.conv(h, layer["w"], layer["b"], padding="SAME", dimension_numbers=CHANNELS_LAST)
        h = kit.max_pool(kit.relu(h), 2)  # 28 -> 14 -> 7
    h = kit.relu(kit.dense(_flat(h), params["dense0"]["w"], params["dense0"]["b"]))
    return kit.dense(h, params["dense1"]["w"], params["dense1"]["b"])


_linear_init, _linear_apply = _mlp(())
_mlp_init, _mlp_apply = _mlp((512,))
_mlp2_init, _mlp2_apply = _mlp((512, 512))

MODELS = {
    m.name: m
    for m in (
        Model("linear", "softmax regression 784 -> 10 (no hidden layer)", _linear_init, _linear_apply),
        Model("mlp", "784 -> 512 -> 10, ReLU", _mlp_init, _mlp_apply),
        Model("mlp2", "784 -> 512 -> 512 -> 10, ReLU", _mlp2_init, _mlp2_apply),
        Model(
            "cnn",
            "conv 3x3x32 - relu - maxpool 2 - conv 3x3x64 - relu - maxpool 2 - dense 256 - relu - dense 10",
            _cnn_init,
            _cnn_apply,
        ),
    )
}


def loss_fn(model: Model, kit: Kit) -> Callable[[Params, jax.Array, jax.Array], jax.Array]:
    """``loss(params, images, labels)``: the mean softmax cross-entropy of a batch."""

    def loss(params, images, labels):
        return jnp.mean(kit.cross_entropy(model.apply(kit, params, images), labels))

    return loss

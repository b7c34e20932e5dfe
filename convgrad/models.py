"""MNIST models as pure functions: ``init(key) -> params`` and ``apply(kit, params, state, images, training)``.

Every architecture is written once, against a :class:`Kit` of layer ops. The
``custom`` kit is convgrad's hand-derived VJPs; the ``autodiff`` kit is the same
ops in plain lax (:mod:`convgrad.autodiff`), differentiated by ``jax.grad``. So
``--grads custom`` and ``--grads autodiff`` train the very same network and differ
only in where the gradients come from.

A model may carry state that is not trained by gradients (the running statistics of a
batch normalization): ``init_state()`` makes it, ``apply(kit, params, model_state,
images, training=True)`` returns it updated with the logits, and with
``training=False`` (evaluation) it is only read. The models here have none: their
state is the empty dict, returned unchanged.

Images come in as ``(N, 28, 28)`` float32. The convnet is written once for either
layout (:func:`make_cnn`): channels-last (``NHWC`` / ``HWIO``, the layout XLA's CPU
convolutions use natively, and ``MODELS["cnn"]``) or channels-first (``NCHW`` /
``OIHW``, PyTorch's). From the same key both layouts draw the same numbers, laid out
for their layout, and compute the same function.
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
from convgrad.ops.geometry import CHANNELS_FIRST, CHANNELS_LAST

Params = dict[str, Any]
ModelState = dict[str, Any]
# (input, kernel, output) layouts of a 2-d convolution, by the layout of its images.
# The cnn's two layouts, by the name of the activations' layout.
LAYOUTS = {"NHWC": CHANNELS_LAST[2], "NCHW": CHANNELS_FIRST[2]}


@dataclasses.dataclass(frozen=True)
class Kit:
    """The layer ops a model is built from."""

    name: str
    conv: Callable[..., jax.Array]
    dense: Callable[..., jax.Array]
    relu: Callable[[jax.Array], jax.Array]
    max_pool: Callable[[jax.Array, int, int], jax.Array]  # (x, window = stride, channel_axis) -> values only
    cross_entropy: Callable[[jax.Array, jax.Array], jax.Array]  # per-example losses


KITS = {
    "custom": Kit(
        name="custom",
        conv=convgrad.conv,
        dense=convgrad.dense,
        relu=convgrad.relu,
        max_pool=lambda x, k, channel_axis: convgrad.max_pool(x, k, channel_axis=channel_axis)[0],
        cross_entropy=convgrad.softmax_cross_entropy,
    ),
    "autodiff": Kit(
        name="autodiff",
        conv=autodiff.conv,
        dense=autodiff.dense,
        relu=autodiff.relu,
        max_pool=lambda x, k, channel_axis: autodiff.max_pool(x, k, channel_axis=channel_axis),
        cross_entropy=autodiff.softmax_cross_entropy,
    ),
}


def no_state() -> ModelState:
    """The state of a model without any: the empty dict."""
    return {}


@dataclasses.dataclass(frozen=True)
class Model:
    """One architecture: ``init(key) -> params``, ``init_state() -> model_state`` and ``apply``.

    ``apply(kit, params, model_state, images, training) -> (logits, model_state)``:
    the logits ``(N, 10)`` of images ``(N, 28, 28)``, and the state after the
    batch (in training; in evaluation, ``training=False``, the state as given).
    """

    name: str
    description: str
    init: Callable[[jax.Array], Params]
    apply: Callable[[Kit, Params, ModelState, jax.Array, bool], tuple[jax.Array, ModelState]]
    init_state: Callable[[], ModelState] = no_state
    layout: str | None = None  # the convnets' image layout ("NHWC" or "NCHW"); None for the MLPs


def dense_init(key: jax.Array, n_in: int, n_out: int, gain: float = 2.0) -> dict[str, jax.Array]:
    """He-normal weights ``(n_in, n_out)`` with variance ``gain / n_in`` and zero biases."""
    w = jax.random.normal(key, (n_in, n_out), jnp.float32) * math.sqrt(gain / n_in)
    return {"w": w, "b": jnp.zeros((n_out,), jnp.float32)}


def conv_init(key: jax.Array, kernel: int, n_in: int, n_out: int, layout: str = "NHWC") -> dict[str, jax.Array]:
    """He-normal kernel (fan-in ``k * k * n_in``) and zero biases: ``(k, k, n_in, n_out)`` HWIO, or its OIHW transpose.

    Both layouts draw the same numbers (as HWIO) from ``key``.
    """
    fan_in = kernel * kernel * n_in
    w = jax.random.normal(key, (kernel, kernel, n_in, n_out), jnp.float32) * math.sqrt(2.0 / fan_in)
    if LAYOUTS[layout][1] == "OIHW":
        w = jnp.transpose(w, (3, 2, 0, 1))
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

    def apply(kit, params, model_state, images, training):
        h = _flat(images)
        for i in range(len(sizes) - 1):
            layer = params[f"dense{i}"]
            h = kit.dense(h, layer["w"], layer["b"])
            if i < len(sizes) - 2:
                h = kit.relu(h)
        return h, model_state

    return init, apply


CNN_DESCRIPTION = "conv 3x3x32 - relu - maxpool 2 - conv 3x3x64 - relu - maxpool 2 - dense 256 - relu - dense 10"


def make_cnn(layout: str = "NHWC") -> Model:
    """The MNIST convnet with its images in ``layout`` (``"NHWC"``, kernels HWIO; or ``"NCHW"``, kernels OIHW).

    The first dense layer reads the last feature map flattened in the layout's
    order, ``(h, w, c)`` or ``(c, h, w)``; the NCHW init permutes the rows of its
    weight to match, so the two layouts' models, initialized from one key,
    compute the same logits (to float32 rounding).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"make_cnn: layout={layout!r} is not one of {sorted(LAYOUTS)}")
    dimension_numbers = LAYOUTS[layout]
    channel_axis = dimension_numbers[0].index("C")

    def init(key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        dense0 = dense_init(k3, 7 * 7 * 64, 256)
        if layout == "NCHW":  # rows in (h, w, c) order -> (c, h, w) order
            dense0["w"] = dense0["w"].reshape(7, 7, 64, 256).transpose(2, 0, 1, 3).reshape(7 * 7 * 64, 256)
        return {
            "conv0": conv_init(k1, 3, 1, 32, layout),
            "conv1": conv_init(k2, 3, 32, 64, layout),
            "dense0": dense0,
            "dense1": dense_init(k4, 256, 10, gain=1.0),
        }

    def apply(kit, params, model_state, images, training):
        h = jnp.expand_dims(images, channel_axis)  # (N, 28, 28, 1) or (N, 1, 28, 28)
        for name in ("conv0", "conv1"):
            layer = params[name]
            h = kit.conv(h, layer["w"], layer["b"], padding="SAME", dimension_numbers=dimension_numbers)
            h = kit.max_pool(kit.relu(h), 2, channel_axis)  # 28 -> 14 -> 7
        h = kit.relu(kit.dense(_flat(h), params["dense0"]["w"], params["dense0"]["b"]))
        return kit.dense(h, params["dense1"]["w"], params["dense1"]["b"]), model_state

    return Model("cnn", CNN_DESCRIPTION, init, apply, layout=layout)


_linear_init, _linear_apply = _mlp(())
_mlp_init, _mlp_apply = _mlp((512,))
_mlp2_init, _mlp2_apply = _mlp((512, 512))

MODELS = {
    m.name: m
    for m in (
        Model("linear", "softmax regression 784 -> 10 (no hidden layer)", _linear_init, _linear_apply),
        Model("mlp", "784 -> 512 -> 10, ReLU", _mlp_init, _mlp_apply),
        Model("mlp2", "784 -> 512 -> 512 -> 10, ReLU", _mlp2_init, _mlp2_apply),
        make_cnn("NHWC"),
    )
}

Loss = Callable[[Params, ModelState, jax.Array, jax.Array], tuple[jax.Array, ModelState]]


def loss_fn(model: Model, kit: Kit) -> Loss:
    """``loss(params, model_state, images, labels) -> (loss, model_state)``: a batch's mean softmax cross-entropy.

    The model runs in training mode; the state it returns is the aux output
    (``jax.value_and_grad(loss, has_aux=True)``).
    """

    def loss(params, model_state, images, labels):
        logits, model_state = model.apply(kit, params, model_state, images, True)
        return jnp.mean(kit.cross_entropy(logits, labels)), model_state

    return loss

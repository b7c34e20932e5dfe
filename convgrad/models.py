"""MNIST models as pure functions: ``init(key) -> params`` and ``apply(kit, params, state, images, training, key)``.

Every architecture is written once, against a :class:`Kit` of layer ops. The
``custom`` kit is convgrad's hand-derived VJPs; the ``autodiff`` kit is the same
ops in plain lax (:mod:`convgrad.autodiff`), differentiated by ``jax.grad``. So
``--grads custom`` and ``--grads autodiff`` train the very same network and differ
only in where the gradients come from.

A model may carry state that is not trained by gradients (the running statistics of a
batch normalization): ``init_state()`` makes it, ``apply(kit, params, model_state,
images, training=True)`` returns it updated with the logits, and with
``training=False`` (evaluation) it is only read. The resnet (:func:`make_resnet`)
carries its batch norms' running statistics; the other models have none (the empty
dict, returned unchanged).

A training step may draw random numbers (the cnn's dropout masks and image shifts,
the resnet's shifts) from the PRNG ``key`` it is given; :func:`convgrad.train.train`
gives each step the key of its seed, epoch and step (:func:`convgrad.train.step_key`),
so the draws, like the batches, are the same in a resumed run.

Images come in as ``(N, 28, 28)`` float32. The convnets are written once for either
layout (:func:`make_cnn`, :func:`make_resnet`): channels-last (``NHWC`` / ``HWIO``,
the layout XLA's CPU convolutions use natively, and that of ``MODELS``) or
channels-first (``NCHW`` / ``OIHW``, PyTorch's). From the same key both layouts draw
the same numbers, laid out for their layout, and compute the same function.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

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
    avg_pool: Callable[..., jax.Array]  # (x, window, stride=None, padding=0, *, channel_axis)
    batch_norm: Callable[..., tuple[jax.Array, jax.Array | None, jax.Array | None]]  # convgrad.batch_norm's signature
    dropout: Callable[..., jax.Array]  # (x, rate, key, *, training)
    cross_entropy: Callable[..., jax.Array]  # (logits, labels, *, label_smoothing) -> per-example losses


KITS = {
    "custom": Kit(
        name="custom",
        conv=convgrad.conv,
        dense=convgrad.dense,
        relu=convgrad.relu,
        max_pool=lambda x, k, channel_axis: convgrad.max_pool(x, k, channel_axis=channel_axis)[0],
        avg_pool=convgrad.avg_pool,
        batch_norm=convgrad.batch_norm,
        dropout=convgrad.dropout,
        cross_entropy=convgrad.softmax_cross_entropy,
    ),
    "autodiff": Kit(
        name="autodiff",
        conv=autodiff.conv,
        dense=autodiff.dense,
        relu=autodiff.relu,
        max_pool=lambda x, k, channel_axis: autodiff.max_pool(x, k, channel_axis=channel_axis),
        avg_pool=autodiff.avg_pool,
        batch_norm=autodiff.batch_norm,
        dropout=autodiff.dropout,
        cross_entropy=autodiff.softmax_cross_entropy,
    ),
}


def no_state() -> ModelState:
    """The state of a model without any: the empty dict."""
    return {}


@dataclasses.dataclass(frozen=True)
class Model:
    """One architecture: ``init(key) -> params``, ``init_state() -> model_state`` and ``apply``.

    ``apply(kit, params, model_state, images, training, key=None) -> (logits, model_state)``:
    the logits ``(N, 10)`` of images ``(N, 28, 28)``, and the state after the
    batch (in training; in evaluation, ``training=False``, the state as given).
    ``key`` is the randomness of a training step (dropout masks, image shifts),
    a PRNG key; a model that draws none ignores it. In training without a key
    (``key=None``) such a model runs deterministically: no dropout and no shifts,
    batch statistics still (what gradient checks and timings of the bare network
    use; :func:`convgrad.train.train` always passes a key). Evaluation never draws.
    """

    name: str
    description: str
    init: Callable[[jax.Array], Params]
    apply: Callable[..., tuple[jax.Array, ModelState]]
    init_state: Callable[[], ModelState] = no_state
    layout: str | None = None  # the convnets' image layout ("NHWC" or "NCHW"); None for the MLPs
    # The recipe's peak learning rate and weight decay: what training uses unless its config
    # says otherwise (:class:`convgrad.train.TrainConfig`'s ``lr`` and ``weight_decay``;
    # :func:`convgrad.train.make_optimizer`).
    lr: float = 2e-3
    weight_decay: float = 0.0
    # The recipe's label smoothing: the training loss's targets are ``(1 - e) onehot + e / 10`` (:func:`loss_fn`).
    label_smoothing: float = 0.0


def dense_init(key: jax.Array, n_in: int, n_out: int, gain: float = 2.0) -> dict[str, jax.Array]:
    """He-normal weights ``(n_in, n_out)`` with variance ``gain / n_in`` and zero biases."""
    w = jax.random.normal(key, (n_in, n_out), jnp.float32) * math.sqrt(gain / n_in)
    return {"w": w, "b": jnp.zeros((n_out,), jnp.float32)}


def conv_init(key: jax.Array, kernel: int, n_in: int, n_out: int, layout: str = "NHWC") -> dict[str, jax.Array]:
    """He-normal kernel (fan-in ``k * k * n_in``) and zero biases: ``(k, k, n_in, n_out)`` HWIO, or its OIHW transpose.

    Both layouts draw the same numbers (as HWIO) from ``key``.
    """
    return {"w": conv_kernel_init(key, kernel, n_in, n_out, layout), "b": jnp.zeros((n_out,), jnp.float32)}


def conv_kernel_init(key: jax.Array, kernel: int, n_in: int, n_out: int, layout: str = "NHWC") -> jax.Array:
    """The He-normal kernel of :func:`conv_init` alone (a convolution followed by a batch norm has no bias)."""
    fan_in = kernel * kernel * n_in
    w = jax.random.normal(key, (kernel, kernel, n_in, n_out), jnp.float32) * math.sqrt(2.0 / fan_in)
    if LAYOUTS[layout][1] == "OIHW":
        w = jnp.transpose(w, (3, 2, 0, 1))
    return w


def random_shift(images: jax.Array, key: jax.Array, max_shift: int) -> jax.Array:
    """Each image ``(N, H, W)`` translated by its own ``(dy, dx)``, both uniform in ``[-max_shift, max_shift]``.

    The pixels moved in from outside repeat the border (edge padding): MNIST's
    borders are background, so this is the background value of the standardized
    images. A data augmentation, not a layer: it runs on the input, which has no
    gradient, the same in either kit.
    """
    n, height, width = images.shape
    padded = jnp.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift)), mode="edge")
    corners = jax.random.randint(key, (n, 2), 0, 2 * max_shift + 1)
    return jax.vmap(lambda image, corner: lax.dynamic_slice(image, corner, (height, width)))(padded, corners)


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

    def apply(kit, params, model_state, images, training, key=None):
        h = _flat(images)
        for i in range(len(sizes) - 1):
            layer = params[f"dense{i}"]
            h = kit.dense(h, layer["w"], layer["b"])
            if i < len(sizes) - 2:
                h = kit.relu(h)
        return h, model_state

    return init, apply


CNN_DESCRIPTION = "conv 3x3x32 - relu - maxpool 2 - conv 3x3x64 - relu - maxpool 2 - dense 256 - relu - dense 10"


def make_cnn(
    layout: str = "NHWC",
    *,
    dropout: tuple[float, float] = (0.0, 0.0),
    shift: int = 0,
    lr: float = 2e-3,
    weight_decay: float = 0.0,
    label_smoothing: float = 0.0,
) -> Model:
    """The MNIST convnet with its images in ``layout`` (``"NHWC"``, kernels HWIO; or ``"NCHW"``, kernels OIHW).

    conv 3x3x32 - relu - maxpool 2 - conv 3x3x64 - relu - maxpool 2 - dense 256 -
    relu - dense 10. The first dense layer reads the last feature map flattened in
    the layout's order, ``(h, w, c)`` or ``(c, h, w)``; the NCHW init permutes the
    rows of its weight to match, so the two layouts' models, initialized from one
    key, compute the same logits (to float32 rounding).

    The training recipe (``MODELS["cnn"]`` is :data:`CNN_RECIPE`): ``dropout =
    (p0, p1)`` drops the flattened features with rate ``p0`` before the first dense
    layer and its activations with rate ``p1`` before the second; ``shift``
    translates each training image by up to that many pixels
    (:func:`random_shift`). Both only in training and only with a ``key``; the
    defaults (none) are the bare architecture that ``convgrad bench`` times.
    ``lr`` and ``weight_decay`` are the recipe's peak learning rate and decay of
    the kernels and dense weights (:attr:`Model.lr`, :attr:`Model.weight_decay`;
    applied by the optimizer, not by ``apply``), ``label_smoothing`` that of the
    training loss (:attr:`Model.label_smoothing`).
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

    def apply(kit, params, model_state, images, training, key=None):
        random = training and key is not None
        shift_key, *dropout_keys = jax.random.split(key, 3) if random else (None, None, None)
        if random and shift:
            images = random_shift(images, shift_key, shift)
        h = jnp.expand_dims(images, channel_axis)  # (N, 28, 28, 1) or (N, 1, 28, 28)
        for name in ("conv0", "conv1"):
            layer = params[name]
            h = kit.conv(h, layer["w"], layer["b"], padding="SAME", dimension_numbers=dimension_numbers)
            h = kit.max_pool(kit.relu(h), 2, channel_axis)  # 28 -> 14 -> 7
        h = kit.dropout(_flat(h), dropout[0], dropout_keys[0], training=random)
        h = kit.relu(kit.dense(h, params["dense0"]["w"], params["dense0"]["b"]))
        h = kit.dropout(h, dropout[1], dropout_keys[1], training=random)
        return kit.dense(h, params["dense1"]["w"], params["dense1"]["b"]), model_state

    recipe = []
    if any(dropout):
        recipe.append(f"dropout {dropout[0]:g} / {dropout[1]:g} before the dense layers")
    if shift:
        recipe.append(f"training images shifted by up to {shift} px")
    description = CNN_DESCRIPTION + "".join(f"; {part}" for part in recipe) + _optimizer_recipe(lr, weight_decay)
    if label_smoothing:
        description += f"; label smoothing {label_smoothing:g}"
    return Model(
        "cnn", description, init, apply, layout=layout, lr=lr, weight_decay=weight_decay,
        label_smoothing=label_smoothing,
    )  # fmt: skip


# The cnn's training recipe, the keyword arguments of make_cnn for MODELS["cnn"] (measured in the README).
CNN_RECIPE: dict[str, Any] = {
    "dropout": (0.0, 0.0),
    "shift": 1,
    "lr": 1e-3,
    "weight_decay": 0.05,
    "label_smoothing": 0.1,
}


# ---------------------------------------------------------------------------- the residual network


def make_resnet(
    layout: str = "NHWC",
    stem: int = 32,
    blocks: tuple[tuple[int, int], ...] = ((32, 1), (64, 2)),
    *,
    stem_pool: bool = True,
    shift: int = 0,
    lr: float = 2e-3,
    weight_decay: float = 0.0,
    label_smoothing: float = 0.0,
) -> Model:
    r"""A small residual network: a stem, residual blocks, global average pooling, dense 10.

    Every convolution is followed by a batch norm and has no bias (the mean the
    batch norm subtracts would cancel it): a *conv-bn unit*. The stem is a 3x3
    unit from 1 to ``stem`` channels and a ReLU; each block ``(width, stride)``
    of ``blocks`` is::

        h = relu(shortcut(h) + bn(conv3x3(relu(bn(conv3x3_stride(h))))))

    where the shortcut is ``h`` itself, or, where the block changes the width or
    the resolution, a 1x1 conv-bn unit with the block's stride (the projection).
    3x3 convolutions pad by 1, so a stride-2 block halves the resolution (28 ->
    14). Then the global average pool over the last feature map (an ``avg_pool``
    whose window is the whole map) and a dense layer to the 10 logits.

    The batch norms' running statistics (momentum 0.1) are the model state:
    each training step normalizes by the batch's statistics and returns the
    updated running ones; evaluation normalizes by the running ones. ``shift``
    translates each training image by up to that many pixels (with a key, as in
    :func:`make_cnn`); ``lr``, ``weight_decay`` and ``label_smoothing`` are the recipe's, as in :func:`make_cnn`.

    Parameters are named by unit, ``stem``, ``block0/conv0``, ``block0/conv1``,
    ``block0/projection``, ..., and ``dense``: each conv-bn unit has ``w`` (HWIO or
    OIHW), ``scale`` and ``offset``, and its running ``mean`` and ``var`` in the
    state under the same path.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"make_resnet: layout={layout!r} is not one of {sorted(LAYOUTS)}")
    dimension_numbers = LAYOUTS[layout]
    channel_axis = dimension_numbers[0].index("C")
    spatial_axes = tuple(i for i, letter in enumerate(dimension_numbers[0]) if letter in "HW")
    # every conv-bn unit: path -> (kernel, in channels, out channels, stride, padding), in the order they run
    units = {("stem",): (3, 1, stem, 1, 1)}
    width = stem
    for i, (out, stride) in enumerate(blocks):
        units[(f"block{i}", "conv0")] = (3, width, out, stride, 1)
        units[(f"block{i}", "conv1")] = (3, out, out, 1, 1)
        if stride != 1 or out != width:
            units[(f"block{i}", "projection")] = (1, width, out, stride, 0)
        width = out

    def init(key):
        keys = jax.random.split(key, len(units) + 1)
        params: Params = {}
        for k, (path, (kernel, n_in, n_out, _, _)) in zip(keys, units.items()):
            unit = {
                "w": conv_kernel_init(k, kernel, n_in, n_out, layout),
                "scale": jnp.ones((n_out,), jnp.float32),
                "offset": jnp.zeros((n_out,), jnp.float32),
            }
            _set(params, path, unit)
        params["dense"] = dense_init(keys[-1], width, 10, gain=1.0)
        return params

    def init_state():
        state: ModelState = {}
        for path, (_, _, n_out, _, _) in units.items():
            _set(state, path, {"mean": jnp.zeros((n_out,), jnp.float32), "var": jnp.ones((n_out,), jnp.float32)})
        return state

    def apply(kit, params, model_state, images, training, key=None):
        if training and key is not None and shift:
            images = random_shift(images, key, shift)
        new_state: ModelState = {}

        def conv_bn(path, h):
            unit, stats = _get(params, path), _get(model_state, path)
            _, _, _, stride, padding = units[path]
            h = kit.conv(h, unit["w"], None, stride=stride, padding=padding, dimension_numbers=dimension_numbers)
            h, mean, var = kit.batch_norm(
                h, unit["scale"], unit["offset"], stats["mean"], stats["var"], training=training,
                channel_axis=channel_axis,
            )  # fmt: skip
            _set(new_state, path, {"mean": mean, "var": var})
            return h

        h = kit.relu(conv_bn(("stem",), jnp.expand_dims(images, channel_axis)))
        if stem_pool:
            h = kit.max_pool(h, 2, channel_axis)
        for i in range(len(blocks)):
            residual = conv_bn((f"block{i}", "conv1"), kit.relu(conv_bn((f"block{i}", "conv0"), h)))
            shortcut = conv_bn((f"block{i}", "projection"), h) if (f"block{i}", "projection") in units else h
            h = kit.relu(shortcut + residual)
        window = tuple(h.shape[a] for a in spatial_axes)
        pooled = kit.avg_pool(h, window, channel_axis=channel_axis).reshape(h.shape[0], width)
        return kit.dense(pooled, params["dense"]["w"], params["dense"]["b"]), new_state

    described = ", ".join(
        f"residual block {out}"
        + (f" (stride {stride}, 1x1 projection)" if (f"block{i}", "projection") in units else "")
        for i, (out, stride) in enumerate(blocks)
    )
    description = (
        f"stem conv-bn {stem}{' - maxpool 2' if stem_pool else ''}, {described}, global average pool, dense 10"
    )
    if shift:
        description += f"; training images shifted by up to {shift} px"
    description += _optimizer_recipe(lr, weight_decay)
    if label_smoothing:
        description += f"; label smoothing {label_smoothing:g}"
    return Model(
        "resnet", description, init, apply, init_state, layout=layout, lr=lr, weight_decay=weight_decay,
        label_smoothing=label_smoothing,
    )  # fmt: skip


# The resnet's widths and training recipe, the keyword arguments of make_resnet for MODELS["resnet"].
RESNET_RECIPE: dict[str, Any] = {
    "stem": 32,
    "blocks": ((64, 1), (64, 2)),
    "shift": 2,
    "weight_decay": 0.05,
    "label_smoothing": 0.1,
}


def _optimizer_recipe(lr: float, weight_decay: float) -> str:
    """The parts of a description for a recipe's learning rate (where not :class:`Model`'s default) and decay."""
    parts = ([f"peak learning rate {lr:g}"] if lr != Model.lr else []) + (
        [f"weight decay {weight_decay:g}"] if weight_decay else []
    )
    return "".join(f"; {part}" for part in parts)


def _get(tree: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        tree = tree[part]
    return tree


def _set(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


_linear_init, _linear_apply = _mlp(())
_mlp_init, _mlp_apply = _mlp((512,))
_mlp2_init, _mlp2_apply = _mlp((512, 512))

MODELS = {
    m.name: m
    for m in (
        Model("linear", "softmax regression 784 -> 10 (no hidden layer)", _linear_init, _linear_apply),
        Model("mlp", "784 -> 512 -> 10, ReLU", _mlp_init, _mlp_apply),
        Model("mlp2", "784 -> 512 -> 512 -> 10, ReLU", _mlp2_init, _mlp2_apply),
        make_cnn("NHWC", **CNN_RECIPE),
        make_resnet("NHWC", **RESNET_RECIPE),
    )
}

Loss = Callable[..., tuple[jax.Array, ModelState]]


def loss_fn(model: Model, kit: Kit) -> Loss:
    """``loss(params, model_state, images, labels, key=None) -> (loss, model_state)``: a batch's mean cross-entropy.

    The model runs in training mode, with ``key`` the step's randomness (see
    :class:`Model`); the state it returns is the aux output
    (``jax.value_and_grad(loss, has_aux=True)``). The cross-entropy is against
    the labels smoothed by the model's recipe (:attr:`Model.label_smoothing`;
    PyTorch's ``label_smoothing``), so with smoothing the reported training loss
    does not reach 0.
    """
    smoothing = model.label_smoothing

    def loss(params, model_state, images, labels, key=None):
        logits, model_state = model.apply(kit, params, model_state, images, True, key)
        return jnp.mean(kit.cross_entropy(logits, labels, label_smoothing=smoothing)), model_state

    return loss

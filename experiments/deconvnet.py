"""DeConvNet (Zeiler & Fergus, 2014): project strong feature-map activations back to pixel space.

A small convnet, channel-first and built from convgrad ops, is trained on MNIST::

    image (1, 28, 28) -> [conv 5x5, 16] -> relu -> max_pool 2 -> [conv 5x5, 32] -> relu -> max_pool 2
                      -> [conv 3x3, 64] -> relu -> max_pool 2 -> dense 576 -> 10

The forward pass keeps the max-pool switches. For each conv layer the script
picks the feature maps that are most active on the test set, finds the test
images that excite each of them most (the top activations), and projects each
such activation back to the pixels, all other activations of that layer set to
zero, layer by layer down to the image, as Zeiler & Fergus do. The activations
are units of a layer's rectified feature map, before its pooling (projecting the
pooled maximum instead would first unpool it onto this same unit):

    unpool with the switches of the layer below (zeros elsewhere) -> rectify -> filter with
    the layer's transposed filters, ``convgrad.conv_transpose(r, w)`` with the layer's own ``w``

Channel-first, so that ``conv_transpose`` takes the layer's weights as they are
(conv's ``(O, C, kh, kw)`` is conv_transpose's ``(C_in, C_out, kh, kw)``):
no layout shuffles between the network and its projection.

That projection is the VJP of the network, from the one activation back to the
input, with every ReLU's backward replaced by "rectify the signal": ``jax.vjp``
of the same network built with ``convgrad.relu(..., rule="deconvnet")``. The
script computes it both ways and asserts they agree. Switching the rule to
``"gradient"`` gives the plain gradient (a saliency map) and ``"guided"`` gives
guided backpropagation (Springenberg et al., 2015); the figures show the three
side by side, next to the input patches that produced the activations.

    PYTHONPATH=. python -m experiments.deconvnet --data-dir /path/to/mnist
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import convgrad
from convgrad.testing import assert_close
from experiments import common

NAME = "deconvnet"
RULES = ("deconvnet", "gradient", "guided")
KERNELS = (5, 5, 3)
CHANNELS = (16, 32, 64)
POOL = 2


# ---------------------------------------------------------------------------- the network


def init_params(seed: int, channels: tuple[int, ...]) -> dict[str, Any]:
    """He-normal conv kernels ``(O, C, k, k)`` and dense weights, zero biases."""
    rng = np.random.default_rng(seed)
    convs, c_in, side = [], 1, 28
    for k, c_out in zip(KERNELS, channels):
        w = common.he_normal(rng, (c_out, c_in, k, k), k * k * c_in)
        convs.append({"w": w, "b": jnp.zeros((c_out,), jnp.float32)})
        c_in, side = c_out, side // POOL
    n_in = c_in * side * side
    dense = {"w": common.he_normal(rng, (n_in, 10), n_in, gain=1.0), "b": jnp.zeros((10,), jnp.float32)}
    return {"conv": convs, "dense": dense}


def forward(
    params: dict[str, Any], images: jax.Array, rule: str = "gradient"
) -> tuple[jax.Array, list[jax.Array], list[jax.Array]]:
    """``(logits, maps, switches)`` for images ``(N, 28, 28)``.

    ``maps[l]`` is conv layer ``l``'s rectified feature map ``(N, O, H, W)``
    (before pooling); ``switches[l]`` says where each of its pooling windows
    found its maximum. ``rule`` is every ReLU's backward rule; the forward pass
    is the same for all three.
    """
    h = images[:, None]
    maps, switches = [], []
    for layer in params["conv"]:
        k = layer["w"].shape[-1]
        a = convgrad.relu(convgrad.conv(h, layer["w"], layer["b"], padding=k // 2), rule=rule)
        h, s = convgrad.max_pool(a, POOL)
        maps.append(a)
        switches.append(s)
    logits = convgrad.dense(h.reshape(h.shape[0], -1), params["dense"]["w"], params["dense"]["b"])
    return logits, maps, switches


def logits_of(params, images):
    return forward(params, images)[0]


# ---------------------------------------------------------------------------- projections


def unit_mask(shape: tuple[int, ...], feature: jax.Array, position: jax.Array) -> jax.Array:
    """One-hot ``(C, H, W)`` mask of the unit at channel ``feature``, flat spatial index ``position``."""
    c, h, w = shape
    channel = jnp.arange(c)[:, None, None] == feature
    place = (jnp.arange(h * w) == position).reshape(1, h, w)
    return (channel & place).astype(jnp.float32)


@partial(jax.jit, static_argnames=("layer", "rule"))
def vjp_projection(params, images, features, positions, *, layer: int, rule: str) -> jax.Array:
    """``(K, 28, 28)``: the VJP from each image's chosen activation (others 0) back to its pixels, ReLUs by ``rule``."""

    def one(image, feature, position):
        def feature_map(x):
            return forward(params, x[None], rule)[1][layer][0]

        a, pullback = jax.vjp(feature_map, image)
        return pullback(a * unit_mask(a.shape, feature, position))[0]

    return jax.vmap(one)(images, features, positions)


@partial(jax.jit, static_argnames=("layer",))
def deconvnet_projection(params, images, features, positions, *, layer: int) -> jax.Array:
    """``(K, 28, 28)``: Zeiler & Fergus' projection written out: unpool, rectify, filter with ``conv_transpose``."""

    def one(image, feature, position):
        _, maps, switches = forward(params, image[None])
        signal = maps[layer] * unit_mask(maps[layer].shape[1:], feature, position)  # the activation, 0 elsewhere
        for below in range(layer, -1, -1):
            w = params["conv"][below]["w"]
            signal = jnp.maximum(signal, 0)  # rectify (this layer's ReLU)
            signal = convgrad.conv_transpose(signal, w, padding=w.shape[-1] // 2)  # filter: transposed filters
            if below > 0:  # unpool into the rectified map of the layer below, at its switches (zeros elsewhere)
                signal = convgrad.max_unpool(signal, switches[below - 1], maps[below - 1].shape[2:])
        return signal[0, 0]

    return jax.vmap(one)(images, features, positions)


def receptive_field(layer: int, index: int) -> tuple[int, int]:
    """Rows (or columns) ``[lo, hi]`` of the image that position ``index`` of conv layer ``layer``'s map sees."""
    lo = hi = index
    for below in range(layer, -1, -1):
        pad = KERNELS[below] // 2
        lo, hi = lo - pad, hi - pad + KERNELS[below] - 1  # the conv's input: the pooled map of the layer below
        if below > 0:
            lo, hi = POOL * lo, POOL * hi + POOL - 1  # the pool's input: the rectified map of the layer below
    return lo, hi


def crop(images: np.ndarray, layer: int, rows: np.ndarray, cols: np.ndarray, fill: float) -> np.ndarray:
    """The receptive-field window of each unit, ``(K, size, size)``, ``fill`` outside the image."""
    lo, hi = receptive_field(layer, 0)
    size = hi - lo + 1
    padded = np.pad(images, ((0, 0), (size, size), (size, size)), constant_values=fill)
    out = np.empty((len(images), size, size), np.float32)
    for n, (i, j) in enumerate(zip(rows, cols)):
        top, left = receptive_field(layer, int(i))[0] + size, receptive_field(layer, int(j))[0] + size
        out[n] = padded[n, top : top + size, left : left + size]
    return out


def outside_field(maps: np.ndarray, layer: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``maps (K, 28, 28)`` with each unit's receptive-field window set to 0: what lies outside it."""
    outside = maps.copy()
    for n, (i, j) in enumerate(zip(rows, cols)):
        (top, bottom), (left, right) = receptive_field(layer, int(i)), receptive_field(layer, int(j))
        outside[n, max(top, 0) : bottom + 1, max(left, 0) : right + 1] = 0
    return outside


# ---------------------------------------------------------------------------- the search for top activations


@jax.jit
def strongest_units(params, images):
    """Per conv layer: each image's largest activation in every feature map ``(N, C)``, and where it is (flat)."""
    _, maps, _ = forward(params, images)
    flat = [m.reshape(m.shape[0], m.shape[1], -1) for m in maps]
    return [f.max(axis=-1) for f in flat], [f.argmax(axis=-1) for f in flat]


def top_activations(params, images, batch: int = 500) -> tuple[list[np.ndarray], list[np.ndarray]]:
    values, positions = [], []
    for start in range(0, images.shape[0], batch):
        v, p = strongest_units(params, images[start : start + batch])
        values.append([np.asarray(x) for x in v])
        positions.append([np.asarray(x) for x in p])
    per_layer = range(len(values[0]))
    return (
        [np.concatenate([batch[layer] for batch in values]) for layer in per_layer],
        [np.concatenate([batch[layer] for batch in positions]) for layer in per_layer],
    )


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of ``a`` and ``b`` (flattened)."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return np.sum(a * b, 1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.split("\n\n")[0], epochs=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's peak learning rate (cosine-decayed to 0)")
    p.add_argument("--features", type=int, default=6, help="feature maps shown per conv layer")
    p.add_argument("--top", type=int, default=9, help="top-activating images per feature map")
    args = p.parse_args(argv)
    channels = CHANNELS
    if args.quick:
        args.epochs, args.features, args.top, channels = 1, 2, 4, (4, 4, 4)
    dataset, source = common.load_data(args)

    params = init_params(args.seed, channels)
    steps_per_epoch = dataset.train_x.shape[0] // args.batch_size
    optimizer = optax.adam(optax.cosine_decay_schedule(args.lr, args.epochs * steps_per_epoch))
    params, history = common.fit(
        common.classifier_step(logits_of, optimizer),
        common.initial_state(params, optimizer),
        dataset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    test_accuracy = common.accuracy(jax.jit(logits_of), params, dataset.test_x, dataset.test_y)
    print(f"convnet: test accuracy {test_accuracy:.4f} after {args.epochs} epoch(s)")

    values, positions = top_activations(params, dataset.test_x)
    images = np.asarray(dataset.test_x)
    layers = []
    for layer, (v, pos) in enumerate(zip(values, positions)):
        ever_active = np.flatnonzero(v.max(axis=0) > 0)  # a feature map that is 0 on every image has nothing to show
        features = ever_active[np.argsort(-v[:, ever_active].mean(axis=0), kind="stable")][: args.features]
        layers.append([project_feature(params, images, layer, int(f), v, pos, args.top) for f in features])

    results = summarize(args, source, test_accuracy, history, layers)
    common.write_json(args.out, NAME, results)
    for layer, rows in enumerate(layers):
        plot_layer(layer, rows, results, args.out)
    plot_overview(layers, results, args.out)
    return results


def project_feature(params, images: np.ndarray, layer: int, feature: int, values, positions, top: int) -> dict:
    """Project the ``top`` strongest activations of one feature map by each rule; check, crop, and keep them.

    ``values[n, f]`` and ``positions[n, f]`` are image ``n``'s largest activation
    in feature map ``f`` of this layer and its flat position.
    """
    side = 28 // POOL**layer
    best = np.argsort(-values[:, feature], kind="stable")[:top]
    unit_rows, unit_cols = np.divmod(positions[best, feature], side)
    chosen = (
        jnp.asarray(images[best]),
        jnp.full(len(best), feature, jnp.int32),
        jnp.asarray(positions[best, feature], jnp.int32),
    )
    projections = {rule: np.asarray(vjp_projection(params, *chosen, layer=layer, rule=rule)) for rule in RULES}
    explicit = np.asarray(deconvnet_projection(params, *chosen, layer=layer))
    error = assert_close(explicit, projections["deconvnet"], what=f"conv{layer + 1} feature {feature} deconvnet")
    cropped = {rule: crop(projection, layer, unit_rows, unit_cols, 0.0) for rule, projection in projections.items()}
    for rule, projection in projections.items():  # exactly 0 outside the receptive field: the crop loses nothing
        assert not np.any(outside_field(projection, layer, unit_rows, unit_cols)), f"{rule}: nonzero outside the field"
    return {
        "feature": feature,
        "images": best,
        "activations": values[best, feature],
        "positions": np.stack([unit_rows, unit_cols], 1),
        "explicit_vs_vjp_relative_error": error,
        "patches": crop(images[best], layer, unit_rows, unit_cols, float(images.min())),  # background outside
        "projections": cropped,
        # the strongest of them, uncropped, for the overview figure
        "first_image": images[best[0]],
        "first_projections": {rule: projection[0] for rule, projection in projections.items()},
        "first_field": (receptive_field(layer, int(unit_rows[0])), receptive_field(layer, int(unit_cols[0]))),
    }


def summarize(args, source, test_accuracy, history, layers) -> dict[str, Any]:
    """The numbers: the check, and how the three rules' projections compare (cosine similarities)."""
    summary = []
    for layer, rows in enumerate(layers):
        patches = np.concatenate([r["patches"] for r in rows])
        ink = patches - patches.min()  # background 0, so the cosine measures overlap with the strokes
        proj = {rule: np.concatenate([r["projections"][rule] for r in rows]) for rule in RULES}
        summary.append(
            {
                "layer": f"conv{layer + 1}",
                "receptive_field": receptive_field(layer, 0)[1] - receptive_field(layer, 0)[0] + 1,
                "features": [r["feature"] for r in rows],
                "top_images": [r["images"] for r in rows],
                "top_activations": [r["activations"] for r in rows],
                "explicit_vs_vjp_max_relative_error": max(r["explicit_vs_vjp_relative_error"] for r in rows),
                "projection_norms": {rule: float(np.linalg.norm(proj[rule])) for rule in RULES},
                "cosine_with_input_patch": {rule: float(np.mean(cosine(proj[rule], ink))) for rule in RULES},
                "max_relative_difference_between_rules": {
                    f"{a} vs {b}": float(np.max(np.abs(proj[a] - proj[b])) / max(np.max(np.abs(proj[a])), 1e-30))
                    for a, b in (("deconvnet", "gradient"), ("deconvnet", "guided"), ("gradient", "guided"))
                },
                "cosine_between_rules": {
                    f"{a} vs {b}": float(np.mean(cosine(proj[a], proj[b])))
                    for a, b in (("deconvnet", "gradient"), ("deconvnet", "guided"), ("gradient", "guided"))
                },
            }
        )
        print(
            f"conv{layer + 1}: explicit vs vjp(deconvnet) max relative error "
            f"{summary[-1]['explicit_vs_vjp_max_relative_error']:.1e}; cosine with the input patch "
            + ", ".join(f"{k} {v:.2f}" for k, v in summary[-1]["cosine_with_input_patch"].items())
        )
    return {
        "data": source,
        "settings": {k: getattr(args, k) for k in ("quick", "epochs", "batch_size", "lr", "features", "top", "seed")},
        "architecture": "conv5x5x16-relu-pool2-conv5x5x32-relu-pool2-conv3x3x64-relu-pool2-dense10 (channel-first)"
        if not args.quick
        else "quick: 4 channels per conv layer",
        "test_accuracy": test_accuracy,
        "train_loss": [r["train_loss"] for r in history[1:]],
        "layers": summary,
    }


# ---------------------------------------------------------------------------- figures


GAP = "0.6"  # the grey between tiles
LEVELS = 33  # colours per map (odd: 0 is exactly white); the mosaics stay small PNGs


def plot_layer(layer: int, rows: list[dict[str, Any]], results: dict[str, Any], out) -> None:
    """One row per feature map: its top patches, then their projections by each rule, as mosaics."""
    top = len(rows[0]["images"])
    columns = int(np.ceil(np.sqrt(top)))
    size = rows[0]["patches"].shape[-1]
    zoom = max(1, 24 // size)  # small fields drawn larger, so the 1-pixel gaps stay thin
    titles = ("top-activating input patches", *RULES)
    fig, axes = common.plt.subplots(
        len(rows), 4, figsize=(10, 2.45 * len(rows) + 1.0), squeeze=False, layout="compressed"
    )
    gray = common.plt.get_cmap("gray_r", LEVELS).with_extremes(bad=GAP)
    diverging = common.plt.get_cmap("RdBu_r", LEVELS).with_extremes(bad=GAP)
    for r, row in enumerate(rows):
        blocks = [row["patches"]] + [row["projections"][rule] for rule in RULES]
        for c, tiles in enumerate(blocks):
            ax = axes[r, c]
            large = np.kron(tiles, np.ones((1, zoom, zoom), np.float32))
            if c == 0:
                ax.imshow(
                    common.mosaic(large, columns), cmap=gray, vmin=float(np.min(tiles)), vmax=float(np.max(tiles))
                )
            else:  # each tile on its own symmetric scale: its largest |value| is full colour
                scale = np.maximum(np.abs(tiles).reshape(len(tiles), -1).max(1), 1e-30)[:, None, None]
                ax.imshow(common.mosaic(large / scale, columns), cmap=diverging, vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=11)
        axes[r, 0].set_ylabel(f"feature {row['feature']}", fontsize=10)
    info = results["layers"][layer]
    cos = info["cosine_with_input_patch"]
    fig.suptitle(
        f"conv{layer + 1}: the {top} strongest activations of {len(rows)} feature maps on the test set, "
        f"projected to pixels (receptive field {size}x{size})\n"
        "projections: each tile scaled to its own max |value|, red > 0 > blue\n"
        "mean cosine with the input strokes: " + ", ".join(f"{k} {v:.2f}" for k, v in cos.items()) + "\n"
        "asserted: explicit unpool/rectify/conv_transpose = vjp with relu(rule='deconvnet') "
        f"(max rel. error {info['explicit_vs_vjp_max_relative_error']:.0e})",
        fontsize=10,
    )
    common.save_figure(fig, out, f"{NAME}_conv{layer + 1}", palette=True)


def plot_overview(layers: list[list[dict[str, Any]]], results: dict[str, Any], out, per_layer: int = 2) -> None:
    """Whole 28x28 images: the strongest activation of the first feature maps of each layer, by each rule."""
    rows = [(layer, row) for layer, layer_rows in enumerate(layers) for row in layer_rows[:per_layer]]
    fig, axes = common.plt.subplots(
        len(rows), 4, figsize=(8.2, 2.05 * len(rows) + 0.9), squeeze=False, layout="compressed"
    )
    for r, (layer, row) in enumerate(rows):
        (top, bottom), (left, right) = row["first_field"]
        axes[r, 0].imshow(row["first_image"], cmap="gray_r")
        axes[r, 0].add_patch(
            common.plt.Rectangle(
                (left - 0.5, top - 0.5),
                right - left + 1,
                bottom - top + 1,
                fill=False,
                edgecolor="tab:red",
                linewidth=1.5,
            )
        )
        axes[r, 0].set_ylabel(f"conv{layer + 1}\nfeature {row['feature']}", fontsize=10)
        for c, rule in enumerate(RULES, start=1):
            projection = row["first_projections"][rule]
            scale = max(float(np.max(np.abs(projection))), 1e-30)
            axes[r, c].imshow(projection / scale, cmap=common.plt.get_cmap("RdBu_r", LEVELS), vmin=-1, vmax=1)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    for c, title in enumerate(("test image, receptive field", *RULES)):
        axes[0, c].set_title(title, fontsize=10)
    fig.suptitle(
        "One activation projected back to the whole image by the three backward rules\n"
        "(the test image that excites the feature map most; each projection scaled to its max |value|, "
        "red > 0 > blue)",
        fontsize=10,
    )
    common.save_figure(fig, out, f"{NAME}_overview", palette=True)


if __name__ == "__main__":
    main()

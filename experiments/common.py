"""What the experiments share: the command line, the data, a small training loop, result files, figure pieces.

Every experiment is a script ``experiments/<name>.py`` with a ``main(argv=None)``
that returns its results as a dict and writes ``<out>/<name>.json`` and
``<out>/<name>_*.png``. Run one from the repository root::

    PYTHONPATH=. python -m experiments.layers --data-dir /path/to/mnist

Data: real MNIST through :mod:`convgrad.data` (``--data-dir``, else
``$CONVGRAD_DATA``, else the user cache, downloading into it). ``--synthetic``
uses a small random dataset instead, and ``--quick`` falls back to it when no
MNIST is found without downloading, so the quick runs (the tests) never need
the network. A directory named with ``--data-dir`` is always used, never
replaced by synthetic data.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import optax
import PIL.Image

import convgrad
from convgrad import data as mnist_data
from convgrad.train import Dataset, TrainState, epoch_permutation, make_step, synthetic_dataset

matplotlib.rcParams["image.interpolation"] = "nearest"  # one block per array element, nothing smoothed

DEFAULT_OUT = Path("experiments") / "results"
FIGURE_DPI = 100


# ---------------------------------------------------------------------------- command line


def parser(description: str, *, epochs: int | None = None) -> argparse.ArgumentParser:
    """The options every experiment takes: ``--quick --out --data-dir --synthetic --seed`` (and ``--epochs``)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny settings that run in seconds (what the tests run)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for the JSON results and the figures")
    p.add_argument(
        "--data-dir", type=Path, default=None, help="MNIST directory (default: $CONVGRAD_DATA, then the user cache)"
    )
    p.add_argument("--synthetic", action="store_true", help="small random data instead of MNIST")
    p.add_argument("--seed", type=int, default=0)
    if epochs is not None:
        p.add_argument("--epochs", type=int, default=epochs, help="training epochs (--quick uses 1 or 2)")
    return p


# ---------------------------------------------------------------------------- data


def load_data(args: argparse.Namespace, *, quick_sizes: tuple[int, int] = (512, 256)) -> tuple[Dataset, str]:
    """The dataset the arguments ask for, and its name (``"mnist"`` or ``"synthetic"``).

    ``--quick`` keeps only ``quick_sizes = (n_train, n_test)`` examples. Without
    ``--data-dir`` a quick run never downloads: when no valid MNIST is found it
    prints why and uses synthetic data of those sizes.
    """
    n_train, n_test = quick_sizes
    if args.synthetic:
        return synthetic_dataset(n_train, n_test, args.seed), "synthetic"
    try:
        mnist = mnist_data.load_mnist(args.data_dir, download=not args.quick, progress=False)
    except (mnist_data.MNISTNotFoundError, mnist_data.MNISTError) as error:
        if not args.quick or args.data_dir is not None:
            raise
        print(f"--quick: no usable MNIST ({str(error).splitlines()[0]}); using synthetic data", file=sys.stderr)
        return synthetic_dataset(n_train, n_test, args.seed), "synthetic"
    dataset = Dataset(*(jnp.asarray(a) for a in mnist_data.prepare(mnist)))
    if args.quick:
        dataset = Dataset(
            dataset.train_x[:n_train], dataset.train_y[:n_train], dataset.test_x[:n_test], dataset.test_y[:n_test]
        )
    return dataset, "mnist"


def most_common_class_fraction(labels: jax.Array) -> float:
    """The accuracy of always predicting the most frequent label."""
    return float(np.bincount(np.asarray(labels), minlength=10).max() / labels.shape[0])


# ---------------------------------------------------------------------------- training


def accuracy(
    predict: Callable[[Any, jax.Array], jax.Array], params: Any, images: jax.Array, labels: jax.Array
) -> float:
    """Fraction of ``images`` whose argmax logit is the label; ``predict`` is jit-compiled, batches of 1000."""
    correct = 0
    for start in range(0, images.shape[0], 1000):
        logits = predict(params, images[start : start + 1000])
        correct += int(jnp.sum(jnp.argmax(logits, axis=-1) == labels[start : start + 1000]))
    return correct / images.shape[0]


def fit(
    step: Callable[..., tuple[TrainState, jax.Array]],
    state: TrainState,
    dataset: Dataset,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    log_every: int | None = None,
    measure: Callable[[Any], dict[str, Any]] | None = None,
) -> tuple[Any, list[dict[str, Any]]]:
    """Run ``step(state, images, labels, batch) -> (state, loss)`` over shuffled mini-batches; the final parameters.

    ``step`` is a :func:`convgrad.train.make_step` (e.g. :func:`classifier_step`);
    ``batch`` holds the indices of one mini-batch into the whole training set
    (``images``, ``labels``): the step gathers it inside jit. Epoch ``e``
    visits the training set in the order of :func:`convgrad.train.epoch_permutation`,
    so runs are reproducible. The history gets one record at step 0, every
    ``log_every`` steps (if given) and at each epoch end: ``step``, ``epoch``
    (fractional), ``train_loss`` (the mean over the steps since the last record;
    ``None`` at step 0) and whatever ``measure(params)`` returns.
    """
    n = dataset.train_x.shape[0]
    steps_per_epoch = n // batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"fit: batch_size={batch_size} exceeds the {n} training examples")
    history: list[dict[str, Any]] = []
    loss_sum, loss_count = jnp.zeros((), jnp.float32), 0

    def record(step_count: int) -> None:
        history.append(
            {
                "step": step_count,
                "epoch": step_count / steps_per_epoch,
                "train_loss": float(loss_sum) / loss_count if loss_count else None,
                **(measure(state.params) if measure else {}),
            }
        )

    record(0)
    for epoch in range(epochs):
        batches = epoch_permutation(seed, epoch, n)[: steps_per_epoch * batch_size].reshape(steps_per_epoch, batch_size)
        for i in range(steps_per_epoch):
            state, loss = step(state, dataset.train_x, dataset.train_y, batches[i])
            loss_sum, loss_count = loss_sum + loss, loss_count + 1
            count = epoch * steps_per_epoch + i + 1
            if (log_every and count % log_every == 0) or i == steps_per_epoch - 1:
                record(count)
                loss_sum, loss_count = jnp.zeros((), jnp.float32), 0
    return state.params, history


def initial_state(params: Any, optimizer: optax.GradientTransformation) -> TrainState:
    """The state :func:`fit` starts from: ``params``, the optimizer's state of them, and no model state."""
    return TrainState(params, optimizer.init(params), {})


def classifier_loss(apply: Callable[[Any, jax.Array], jax.Array]) -> Callable:
    """``loss(params, model_state, images, labels) -> (loss, model_state)`` for :func:`convgrad.train.make_step`.

    The mean softmax cross-entropy of ``apply(params, images) -> logits``, a
    stateless network built from convgrad ops, so every gradient comes from
    convgrad's hand-derived VJPs; the (empty) model state passes through.
    """

    def loss(params, model_state, images, labels):
        return jnp.mean(convgrad.softmax_cross_entropy(apply(params, images), labels)), model_state

    return loss


def classifier_step(apply: Callable[[Any, jax.Array], jax.Array], optimizer: optax.GradientTransformation) -> Callable:
    """``step(state, images, labels, batch) -> (state, loss)`` for :func:`fit`: :func:`convgrad.train.make_step`.

    On the default device, the state not donated (the experiments keep their
    initial parameters to measure how far the weights moved).
    """
    return make_step(classifier_loss(apply), optimizer, donate=False)


def he_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, gain: float = 2.0) -> jax.Array:
    """float32 normal weights of variance ``gain / fan_in`` (He: gain 2 before a ReLU, 1 before none).

    Drawn with NumPy: each distinct shape drawn with ``jax.random`` outside jit
    costs a compilation, which would dominate the quick runs.
    """
    return jnp.asarray(rng.standard_normal(shape, np.float32) * np.float32(math.sqrt(gain / fan_in)))


# ---------------------------------------------------------------------------- result files


def write_json(out: Path, name: str, results: dict[str, Any]) -> Path:
    """Write ``results`` to ``out/name.json`` (arrays become lists)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(results, indent=1, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    array = np.asarray(value)
    return array.item() if array.ndim == 0 else array.tolist()


def save_figure(fig: matplotlib.figure.Figure, out: Path, name: str, *, palette: bool = False) -> Path:
    """Save ``fig`` as ``out/name.png`` at :data:`FIGURE_DPI` and close it.

    ``palette`` stores it as a 256-colour palette PNG (about 3x smaller). Meant
    for figures drawn with few colours (discrete colour maps), where the merged
    colours are only shades of anti-aliased text.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=FIGURE_DPI, bbox_inches="tight")
    plt.close(fig)
    if palette:
        with PIL.Image.open(path) as image:
            rgb = image.convert("RGB")
        rgb.quantize(256, method=PIL.Image.Quantize.MEDIANCUT, dither=PIL.Image.Dither.NONE).save(path, optimize=True)
    return path


# ---------------------------------------------------------------------------- figure pieces


def annotated_grid(
    ax: matplotlib.axes.Axes,
    values: np.ndarray,
    *,
    title: str,
    norm: matplotlib.colors.Normalize,
    cmap: str = "RdBu_r",
    fmt: str = "{:g}",
    fontsize: float = 9,
) -> matplotlib.image.AxesImage:
    """Draw a 2-d array as coloured cells, each labelled with its value; returns the image (for a colorbar).

    The colour (33 levels of ``cmap``, 0 white in a diverging map) only guides the eye; the labels carry the values.
    """
    values = np.asarray(values)
    colormap = plt.get_cmap(cmap, 33)
    image = ax.imshow(values, cmap=colormap, norm=norm)
    for (i, j), v in np.ndenumerate(values):
        red, green, blue, _ = colormap(norm(v))
        dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
        ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=fontsize, color="white" if dark else "black")
    ax.set_xticks(range(values.shape[1]), range(values.shape[1]), fontsize=7)
    ax.set_yticks(range(values.shape[0]), range(values.shape[0]), fontsize=7)
    ax.tick_params(length=0)
    ax.set_title(title, fontsize=10)
    return image


def symmetric_norm(*arrays: Any) -> matplotlib.colors.Normalize:
    """A colour scale centred on 0 that covers every value of ``arrays`` (0 white in a diverging map)."""
    largest = max(float(np.max(np.abs(np.asarray(a)))) for a in arrays)
    return matplotlib.colors.Normalize(-largest or -1.0, largest or 1.0)


def mosaic(tiles: np.ndarray, columns: int, gap_value: float = np.nan) -> np.ndarray:
    """Tile ``(k, h, w)`` images into one ``(rows (h + 1) - 1, columns (w + 1) - 1)`` image with 1-pixel gaps."""
    k, h, w = tiles.shape
    rows = math.ceil(k / columns)
    sheet = np.full((rows * (h + 1) - 1, columns * (w + 1) - 1), gap_value, np.float32)
    for index, tile in enumerate(tiles):
        r, c = divmod(index, columns)
        sheet[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = tile
    return sheet

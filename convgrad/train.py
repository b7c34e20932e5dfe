"""Jit-compiled MNIST training on convgrad's hand-derived VJPs (or on autodiff, to compare).

:func:`train` is what ``convgrad train`` runs: the whole dataset on the device,
batches indexed from a per-epoch permutation, an optax optimizer, a jit-compiled
step with donated buffers, an evaluation on the 10k test set each epoch, a
checkpoint written atomically at each epoch end, and a report.

Several devices: the run is data-parallel over a :func:`convgrad.parallel.data_mesh`
(default: every device JAX sees). The dataset, the parameters and the
optimizer state are replicated; each step's batch indices are sharded over the
``data`` axis, so each device gathers and differentiates its slice of the
batch, and the jit-compiled step (explicit in/out shardings) all-reduces the
gradients. The batches, the permutation and the arithmetic per example are
those of one device; only the order of the float32 sums over the batch
differs. On one device the results are bit-identical to a plain ``jax.jit``.

Determinism: the permutation of epoch ``e`` is drawn from ``fold_in(key(seed),
e)``, so a run resumed from the checkpoint of epoch ``e`` replays exactly the
batches the uninterrupted run would have seen, and ends with the same parameters.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from convgrad import data as mnist_data
from convgrad import parallel
from convgrad.files import atomic_write_bytes
from convgrad.models import KITS, MODELS, Model, loss_fn
from convgrad.progress import Progress

CHECKPOINT = "checkpoint.npz"

# Steps dispatched but not finished, at most. Unbounded, jax 0.10.2's CPU client
# deadlocks once some tens of multi-device steps are queued on simulated CPU
# devices (8 on 2 cores: 16 queued ran, 64 hung in the all-reduce rendezvous);
# two in flight still keep an accelerator fed while the host prepares the next.
STEPS_IN_FLIGHT = 2


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (and must match to resume one)."""

    model: str = "mlp"
    epochs: int = 5
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0
    grads: str = "custom"
    optimizer: str = "adam"
    momentum: float = 0.9
    schedule: str = "cosine"

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"train: model={self.model!r} is not one of {sorted(MODELS)}")
        if self.grads not in KITS:
            raise ValueError(f"train: grads={self.grads!r} is not one of {sorted(KITS)}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"train: optimizer={self.optimizer!r} is not one of ['adam', 'sgd']")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"train: schedule={self.schedule!r} is not one of ['constant', 'cosine']")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"train: {name} must be a positive int, got {name}={value!r}")
        if not self.lr > 0:
            raise ValueError(f"train: lr must be positive, got lr={self.lr!r}")


class Dataset(NamedTuple):
    """Standardized images ``(N, 28, 28)`` float32 and int32 labels, on the device."""

    train_x: jax.Array
    train_y: jax.Array
    test_x: jax.Array
    test_y: jax.Array


class TrainState(NamedTuple):
    params: Any
    opt_state: Any


def load_dataset(data_dir: str | Path | None = None, *, progress: bool = True) -> Dataset:
    """Real MNIST via :func:`convgrad.data.load_mnist`, standardized with the training mean/std, on the device."""
    arrays = mnist_data.prepare(mnist_data.load_mnist(data_dir, progress=progress))
    return Dataset(*(jnp.asarray(a) for a in arrays))


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """Adam, or SGD with (heavy-ball) momentum; the learning rate ``config.lr`` constant or cosine-decayed to 0.

    The cosine schedule spans the whole run (``epochs * steps_per_epoch``
    steps), so a resumed run must keep ``epochs``.
    """
    if config.schedule == "cosine":
        lr = optax.cosine_decay_schedule(config.lr, config.epochs * steps_per_epoch)
    else:
        lr = config.lr
    if config.optimizer == "adam":
        return optax.adam(lr)
    return optax.sgd(lr, momentum=config.momentum)


def make_train_step(model: Model, config: TrainConfig, optimizer: optax.GradientTransformation, mesh: Mesh) -> Callable:
    """``step(state, images, labels, batch_indices) -> (state, loss)``, jit-compiled over ``mesh``, the state donated.

    ``state``, ``images`` and ``labels`` (the whole training set) are replicated;
    ``batch_indices`` is sharded over the ``data`` axis, and so is the gathered
    batch. The loss is the mean over the whole (global) batch, so its gradient
    is the one-device gradient; XLA inserts the all-reduce.
    """
    loss = loss_fn(model, KITS[config.grads])
    replicated, batch_sharded = parallel.replicated(mesh), parallel.batch_sharded(mesh)

    def step(state: TrainState, images, labels, batch):
        batch_images = jax.lax.with_sharding_constraint(images[batch], batch_sharded)
        batch_labels = jax.lax.with_sharding_constraint(labels[batch], batch_sharded)
        value, grads = jax.value_and_grad(loss)(state.params, batch_images, batch_labels)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return TrainState(optax.apply_updates(state.params, updates), opt_state), value

    return jax.jit(
        step,
        in_shardings=(replicated, replicated, replicated, batch_sharded),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )


def make_evaluate(model: Model, config: TrainConfig, mesh: Mesh, batch_size: int = 1000) -> Callable:
    """``evaluate(params, images, labels) -> accuracy`` (a fraction), in jit-compiled batches sharded over ``mesh``.

    Each batch holds ``batch_size`` examples (or all, if fewer) rounded up to a
    multiple of the devices; the indices past the end of the images count as
    misses and not as examples.
    """
    kit = KITS[config.grads]
    n_devices = parallel.data_axis_size(mesh)
    replicated, batch_sharded = parallel.replicated(mesh), parallel.batch_sharded(mesh)

    @partial(
        jax.jit,
        in_shardings=(replicated, replicated, replicated, batch_sharded),
        out_shardings=replicated,
    )
    def correct(params, images, labels, indices):
        real = indices < images.shape[0]
        indices = jnp.where(real, indices, 0)
        hits = jnp.argmax(model.apply(kit, params, images[indices]), axis=-1) == labels[indices]
        return jnp.sum(hits & real)

    def evaluate(params, images, labels):
        total, chunk = 0, -(-min(batch_size, images.shape[0]) // n_devices) * n_devices
        for start in range(0, images.shape[0], chunk):
            indices = parallel.global_array(np.arange(start, start + chunk, dtype=np.int32), batch_sharded)
            total += int(correct(params, images, labels, indices))
        return total / images.shape[0]

    return evaluate


def epoch_permutation(seed: int, epoch: int, n: int) -> jax.Array:
    """The order in which epoch ``epoch`` visits the ``n`` training examples."""
    return jax.random.permutation(jax.random.fold_in(jax.random.key(seed), epoch), n)


def init_state(model: Model, config: TrainConfig, optimizer: optax.GradientTransformation) -> TrainState:
    params = model.init(jax.random.key(config.seed))
    return TrainState(params, optimizer.init(params))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every leaf of ``tree`` (the same values in every process) as a global array replicated over ``mesh``."""
    return jax.tree.map(lambda leaf: parallel.global_array(leaf, parallel.replicated(mesh)), tree)


def train(
    config: TrainConfig,
    dataset: Dataset,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    mesh: Mesh | None = None,
) -> tuple[TrainState, dict[str, Any]]:
    """Train ``config.model`` for ``config.epochs`` epochs; returns the final state and the report.

    With ``checkpoint_dir`` the state is written atomically at each epoch end
    (by process 0 of a multi-host run); with ``resume`` an interrupted run
    continues from the checkpoint there (written with this same config, on any
    number of devices) up to ``config.epochs``. ``mesh`` (default:
    :func:`convgrad.parallel.data_mesh` over every device) is where the step
    runs, data-parallel over its ``data`` axis; ``config.batch_size`` must be a
    multiple of that axis's size.
    """
    model = MODELS[config.model]
    mesh = parallel.data_mesh() if mesh is None else mesh
    parallel.check_divides(config.batch_size, mesh, "train: batch_size")
    n_train = dataset.train_x.shape[0]
    steps = n_train // config.batch_size
    if steps < 1:
        raise ValueError(f"train: batch_size={config.batch_size} exceeds the {n_train} training examples")
    optimizer = make_optimizer(config, steps)
    step = make_train_step(model, config, optimizer, mesh)
    evaluate = make_evaluate(model, config, mesh)

    state, history = init_state(model, config, optimizer), []
    if resume:
        if checkpoint_dir is None:
            raise ValueError("train: resume=True needs a checkpoint_dir")
        state, history = load_checkpoint(Path(checkpoint_dir), config, state)
    state = replicate(state, mesh)
    train_x, train_y, test_x, test_y = replicate(tuple(dataset), mesh)
    batch_sharded = parallel.batch_sharded(mesh)

    device = str(mesh.devices.flat[0])
    for epoch in range(len(history), config.epochs):
        order = np.asarray(epoch_permutation(config.seed, epoch, n_train))
        start, total = time.perf_counter(), replicate(np.float32(0), mesh)
        in_flight: collections.deque[jax.Array] = collections.deque()
        with Progress(steps, f"epoch {epoch + 1}/{config.epochs}", enabled=progress, unit="steps") as bar:
            for i in range(steps):
                batch = parallel.global_array(order[i * config.batch_size : (i + 1) * config.batch_size], batch_sharded)
                state, loss = step(state, train_x, train_y, batch)
                total = total + loss
                in_flight.append(loss)
                if len(in_flight) > STEPS_IN_FLIGHT:
                    in_flight.popleft().block_until_ready()
                if progress and (i + 1) % max(1, steps // 20) == 0:
                    rate = (i + 1) * config.batch_size / (time.perf_counter() - start)
                    bar.update(max(1, steps // 20), note=f"loss {float(total) / (i + 1):.4f} {rate:,.0f} ex/s")
        train_loss = float(total) / steps  # waits for the epoch's last step
        seconds = time.perf_counter() - start
        accuracy = evaluate(state.params, test_x, test_y)
        record = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "seconds": seconds,
            "examples_per_second": steps * config.batch_size / seconds,
            "test_accuracy": accuracy,
        }
        history.append(record)
        if checkpoint_dir is not None and jax.process_index() == 0:
            save_checkpoint(Path(checkpoint_dir), config, state, history)
        if on_epoch is not None:
            on_epoch(record)

    report = {
        **dataclasses.asdict(config),
        "device": device,
        "devices": parallel.data_axis_size(mesh),
        "processes": jax.process_count(),
        "jax_version": jax.__version__,
        "steps_per_epoch": steps,
        "history": history,
        "test_accuracy": history[-1]["test_accuracy"] if history else None,
        "train_seconds": sum(r["seconds"] for r in history),
    }
    return state, report


def save_checkpoint(directory: Path, config: TrainConfig, state: TrainState, history: list[dict[str, Any]]) -> Path:
    """Write ``state`` (every leaf, exactly), the config and the history atomically to ``directory/checkpoint.npz``."""
    leaves = jax.tree.leaves(state)
    buffer = io.BytesIO()
    meta = {"config": dataclasses.asdict(config), "history": history}
    np.savez(
        buffer,
        meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
        **{f"leaf{i}": np.asarray(x) for i, x in enumerate(leaves)},
    )
    return atomic_write_bytes(directory / CHECKPOINT, buffer.getvalue())


def load_checkpoint(
    directory: Path, config: TrainConfig, template: TrainState
) -> tuple[TrainState, list[dict[str, Any]]]:
    """The state and history saved in ``directory``, checked against ``config`` and the structure of ``template``."""
    path = directory / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"train: --resume: no checkpoint at {path}")
    with np.load(path) as saved:
        meta = json.loads(saved["meta"].tobytes().decode())
        leaves, treedef = jax.tree.flatten(template)
        loaded = [saved[f"leaf{i}"] for i in range(len(leaves))] if f"leaf{len(leaves) - 1}" in saved else None
    saved_config = meta["config"]
    mismatched = {
        k: (v, saved_config.get(k)) for k, v in dataclasses.asdict(config).items() if saved_config.get(k) != v
    }
    if mismatched:
        shown = ", ".join(f"{k}={now!r} but the checkpoint has {then!r}" for k, (now, then) in mismatched.items())
        raise ValueError(
            f"train: --resume: {path} was written by another configuration: {shown} "
            "(resume continues an interrupted run with its own settings; start a new run to change them)"
        )
    if loaded is None or any(a.shape != b.shape or a.dtype != b.dtype for a, b in zip(loaded, leaves)):
        raise ValueError(f"train: --resume: {path} does not hold a {config.model} state of the expected shapes")
    return jax.tree.unflatten(treedef, [jnp.asarray(a) for a in loaded]), meta["history"]

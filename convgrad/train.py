"""Jit-compiled MNIST training on convgrad's hand-derived VJPs (or on autodiff, to compare).

:func:`train` is what ``convgrad train`` runs: the whole dataset on the device,
batches indexed from a per-epoch permutation, an optax optimizer, a jit-compiled
step with donated buffers (:func:`make_step`, which ``convgrad bench`` and the
experiments run too), an evaluation on the 10k test set each epoch, a
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

Checkpoints are safetensors files (:func:`save_checkpoint`, :func:`load_checkpoint`):
every array of the training state under its name (``params/conv0/w``,
``opt_state/0/mu/conv0/w``, ``model_state/...``), and the configuration, the history
and a SHA-256 of the arrays as JSON strings in the header's metadata. They load
without pickle, in any tool that reads safetensors.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import struct
import time
import typing
from collections.abc import Callable, Collection
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import safetensors
import safetensors.numpy
from jax.sharding import Mesh

import convgrad
from convgrad import data as mnist_data
from convgrad import parallel
from convgrad.files import atomic_write_bytes, output_directory_problem, remove_leftovers
from convgrad.models import KITS, MODELS, Loss, Model, ModelState, Params, loss_fn
from convgrad.progress import Progress

CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_FORMAT = "convgrad.checkpoint"
CHECKPOINT_VERSION = 1

# Steps dispatched but not finished, at most. Unbounded, jax 0.10.2's CPU client
# deadlocks once some tens of multi-device steps are queued on simulated CPU
# devices (8 on 2 cores: 16 queued ran, 64 hung in the all-reduce rendezvous);
# two in flight still keep an accelerator fed while the host prepares the next.
STEPS_IN_FLIGHT = 2

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("cosine", "constant")


class ConfigError(ValueError):
    """A bad value of one argument of :class:`TrainConfig` or :func:`train`.

    ``argument`` is its name as the library spells it (``batch_size``), ``value``
    the value given, ``problem`` what is wrong with it; the command line shows
    them under its own flag names.
    """

    def __init__(self, argument: str, value: Any, problem: str):
        self.argument, self.value, self.problem = argument, value, problem
        super().__init__(f"train: {argument}={value!r} {problem}")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: not a safetensors file, truncated, corrupt, or not convgrad's.

    ``path`` is the file, ``problem`` what is wrong with it.
    """

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")


class ConfigMismatchError(CheckpointError):
    """``resume=True`` with a checkpoint of another configuration; ``mismatched`` maps ``field -> (now, saved)``."""

    def __init__(self, path: str | Path, mismatched: dict[str, tuple[Any, Any]]):
        self.mismatched = mismatched
        shown = ", ".join(f"{k}={now!r} but the checkpoint has {then!r}" for k, (now, then) in mismatched.items())
        super().__init__(path, f"was written by another configuration: {shown} ({RESUME_HINT})")


RESUME_HINT = "resume continues an interrupted run with its own settings; start a new run to change them"


def _choice(default: str, choices: Collection[str], help: str) -> Any:
    """A field whose value must be in ``choices`` (a live collection: ``MODELS`` itself, not a copy of its keys)."""
    return dataclasses.field(default=default, metadata={"choices": choices, "help": help})


def _value(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


# The fields of TrainConfig whose default, None, is the model's own value (the Model attribute of that name).
RECIPE_FIELDS = ("lr", "weight_decay")


def _recipes(field: str) -> str:
    """Each model's value of a recipe field, for the help text: ``(linear 0.002, ..., cnn 0.001)``."""
    return "(" + ", ".join(f"{name} {getattr(model, field):g}" for name, model in MODELS.items()) + ")"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (and must match to resume one).

    Each field's default, allowed values (``metadata["choices"]``) and help text
    are given here once; ``convgrad train``'s options are built from them.

    Raises:
      ConfigError: a value outside its choices, a non-positive ``epochs``,
        ``batch_size`` or ``lr``, a negative ``weight_decay``.

    ``lr=None`` and ``weight_decay=None`` (the defaults) become the model's
    recipe (:attr:`convgrad.models.Model.lr`, :attr:`~convgrad.models.Model.weight_decay`)
    when the config is made, so a config, and a checkpoint's copy of it, always
    holds the numbers used.
    """

    model: str = _choice("mlp", MODELS, "the architecture")
    epochs: int = _value(5, "epochs to train; the learning-rate schedule spans all of them")
    batch_size: int = _value(64, "examples per step (a multiple of the devices)")
    lr: float | None = _value(None, "peak learning rate; None: the model's recipe " + _recipes("lr"))
    seed: int = _value(0, "seed of the initial parameters and of the order of the examples")
    grads: str = _choice("custom", KITS, "custom: convgrad's hand-derived VJPs; autodiff: jax.grad of plain lax")
    optimizer: str = _choice("adam", OPTIMIZERS, "adam, or sgd with momentum")
    momentum: float = _value(0.9, "momentum of --optimizer sgd")
    schedule: str = _choice("cosine", SCHEDULES, "learning-rate schedule over the run: cosine decay to 0, or constant")
    weight_decay: float | None = _value(
        None,
        "decay of the kernels and dense weights (not biases, scales, offsets): AdamW's decoupled decay with adam, "
        "an L2 term with sgd; None: the model's recipe " + _recipes("weight_decay"),
    )

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value, choices = getattr(self, field.name), field.metadata.get("choices")
            if choices is not None and value not in choices:
                raise ConfigError(field.name, value, f"is not one of {list(choices)}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(name, value, "is not a positive int")
        for name in RECIPE_FIELDS:  # None: the model's recipe, written into the config (and so into checkpoints)
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(MODELS[self.model], name))
        if not self.lr > 0:
            raise ConfigError("lr", self.lr, "is not positive")
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, int | float):
            raise ConfigError("weight_decay", self.weight_decay, "is not a number")
        if not self.weight_decay >= 0:
            raise ConfigError("weight_decay", self.weight_decay, "is negative (or NaN)")

    @classmethod
    def field_types(cls) -> dict[str, type]:
        """Each field's type (``int``, ``float``, ``str``), from the annotations (``float`` for ``float | None``)."""
        hints = typing.get_type_hints(cls)
        names = [field.name for field in dataclasses.fields(cls)]
        options = {name: typing.get_args(hints[name]) or (hints[name],) for name in names}
        return {name: next(t for t in types if t is not type(None)) for name, types in options.items()}


class Dataset(NamedTuple):
    """Standardized images ``(N, 28, 28)`` float32 and int32 labels, on the device."""

    train_x: jax.Array
    train_y: jax.Array
    test_x: jax.Array
    test_y: jax.Array


class TrainState(NamedTuple):
    """What a training step carries: the parameters, the optimizer's state and the model's (``{}`` if it has none)."""

    params: Params
    opt_state: Any
    model_state: ModelState


def load_dataset(data_dir: str | Path | None = None, *, progress: bool = True) -> Dataset:
    """Real MNIST via :func:`convgrad.data.load_mnist`, standardized with the training mean/std, on the device."""
    arrays = mnist_data.prepare(mnist_data.load_mnist(data_dir, progress=progress))
    return Dataset(*(jnp.asarray(a) for a in arrays))


def synthetic_dataset(n_train: int, n_test: int, seed: int = 0) -> Dataset:
    """Standard-normal 28x28 images labelled by the argmax of a fixed random linear map (so they are learnable).

    No files, no network: what the tests and the experiments' ``--synthetic`` runs use.
    """
    rng = np.random.default_rng(seed)
    projection = rng.standard_normal((784, 10))
    images = rng.standard_normal((n_train + n_test, 28, 28)).astype(np.float32)
    labels = np.argmax(images.reshape(len(images), -1) @ projection, axis=1).astype(np.int32)
    return Dataset(
        jnp.asarray(images[:n_train]),
        jnp.asarray(labels[:n_train]),
        jnp.asarray(images[n_train:]),
        jnp.asarray(labels[n_train:]),
    )


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """Adam, or SGD with (heavy-ball) momentum; the learning rate ``config.lr`` constant or cosine-decayed to 0.

    The cosine schedule spans the whole run (``epochs * steps_per_epoch``
    steps), so a resumed run must keep ``epochs``. With ``config.weight_decay``
    ``> 0`` the decay acts on the arrays of two or more dimensions (kernels and
    dense weights; not the biases, batch-norm scales and offsets): with Adam it
    is AdamW's decoupled decay, ``p <- p - lr * (adam_update + weight_decay * p)``
    (Loshchilov and Hutter, 2019); with SGD the L2 term ``weight_decay * p`` is
    added to the gradient before the momentum (``torch.optim.SGD``'s
    ``weight_decay``). Without decay the optimizer is plain ``optax.adam`` /
    ``optax.sgd``.
    """
    if config.schedule == "cosine":
        lr = optax.cosine_decay_schedule(config.lr, config.epochs * steps_per_epoch)
    else:
        lr = config.lr
    decayed = partial(jax.tree.map, lambda p: p.ndim > 1)
    if config.optimizer == "adam":
        if config.weight_decay:
            return optax.adamw(lr, weight_decay=config.weight_decay, mask=decayed)
        return optax.adam(lr)
    sgd = optax.sgd(lr, momentum=config.momentum)
    if config.weight_decay:
        return optax.chain(optax.add_decayed_weights(config.weight_decay, mask=decayed), sgd)
    return sgd


def make_step(
    loss: Loss, optimizer: optax.GradientTransformation, *, mesh: Mesh | None = None, donate: bool = True
) -> Callable[..., tuple[TrainState, jax.Array]]:
    """``step(state, images, labels, batch=None, key=None) -> (state, loss)``: one optimizer step, jit-compiled.

    ``loss(params, model_state, images, labels) -> (value, model_state)`` (e.g.
    :func:`convgrad.models.loss_fn`) is differentiated with respect to the
    parameters; the model state it returns is carried to the next step. ``batch``
    holds the indices of the batch into ``images`` and ``labels`` (the whole
    training set, on the device), gathered inside the step; with ``batch=None``
    ``images`` and ``labels`` are the batch. ``key``, the raw ``uint32`` data of a
    PRNG key (:func:`step_keys`), is the step's randomness: the loss gets it, as a
    typed key, as a fifth argument (``loss(params, model_state, images, labels,
    key)``: dropout masks, image shifts); with ``key=None`` it gets four.

    Args:
      loss: the batch's loss and the updated model state.
      optimizer: the optax transformation; ``state.opt_state`` is its state.
      mesh: None runs the step on the default device (plain ``jax.jit``). A
        :func:`convgrad.parallel.data_mesh` runs it data-parallel: the state and
        the dataset replicated, ``batch`` (then required) sharded over the
        ``data`` axis, and so the gathered batch; the loss is the mean over the
        whole batch, so its gradient is the one-device gradient, and XLA inserts
        the all-reduce.
      donate: reuse the input state's buffers for the output state; the state
        passed in must not be used afterwards.
    """

    def step(state: TrainState, images, labels, batch=None, key=None):
        if batch is not None:
            images, labels = images[batch], labels[batch]
            if mesh is not None:
                images = jax.lax.with_sharding_constraint(images, parallel.batch_sharded(mesh))
                labels = jax.lax.with_sharding_constraint(labels, parallel.batch_sharded(mesh))
        randomness = () if key is None else (jax.random.wrap_key_data(key),)
        (value, model_state), grads = jax.value_and_grad(loss, has_aux=True)(
            state.params, state.model_state, images, labels, *randomness
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return TrainState(optax.apply_updates(state.params, updates), opt_state, model_state), value

    donate_argnums = (0,) if donate else ()
    if mesh is None:
        return jax.jit(step, donate_argnums=donate_argnums)
    replicated, batch_sharded = parallel.replicated(mesh), parallel.batch_sharded(mesh)
    sharded = jax.jit(
        step,
        in_shardings=(replicated, replicated, replicated, batch_sharded, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=donate_argnums,
    )

    def sharded_step(state: TrainState, images, labels, batch, key=None):
        return sharded(state, images, labels, batch, key)  # in_shardings name all five arguments

    return sharded_step


def make_evaluate(model: Model, config: TrainConfig, mesh: Mesh, batch_size: int = 1000) -> Callable:
    """``evaluate(params, model_state, images, labels) -> accuracy`` (a fraction), in batches sharded over ``mesh``.

    The model runs in evaluation mode (``training=False``, its stored state read,
    not updated). Each batch holds ``batch_size`` examples (or all, if fewer)
    rounded up to a multiple of the devices; the indices past the end of the
    images count as misses and not as examples.
    """
    kit = KITS[config.grads]
    n_devices = parallel.data_axis_size(mesh)
    replicated, batch_sharded = parallel.replicated(mesh), parallel.batch_sharded(mesh)

    @partial(
        jax.jit,
        in_shardings=(replicated, replicated, replicated, replicated, batch_sharded),
        out_shardings=replicated,
    )
    def correct(params, model_state, images, labels, indices):
        real = indices < images.shape[0]
        indices = jnp.where(real, indices, 0)
        logits, _ = model.apply(kit, params, model_state, images[indices], False)
        hits = jnp.argmax(logits, axis=-1) == labels[indices]
        return jnp.sum(hits & real)

    def evaluate(params, model_state, images, labels):
        total, chunk = 0, -(-min(batch_size, images.shape[0]) // n_devices) * n_devices
        for start in range(0, images.shape[0], chunk):
            indices = parallel.global_array(np.arange(start, start + chunk, dtype=np.int32), batch_sharded)
            total += int(correct(params, model_state, images, labels, indices))
        return total / images.shape[0]

    return evaluate


def epoch_permutation(seed: int, epoch: int, n: int) -> jax.Array:
    """The order in which epoch ``epoch`` visits the ``n`` training examples."""
    return jax.random.permutation(jax.random.fold_in(jax.random.key(seed), epoch), n)


# The stream of the steps' keys, folded into key(seed) first; epoch_permutation folds in the epoch
# itself (0, 1, ...), which never reaches this.
STEP_KEY_STREAM = 2**32 - 1


def step_key(seed: int, epoch: int, step: int) -> jax.Array:
    """The PRNG key of step ``step`` of epoch ``epoch``: ``fold_in(fold_in(fold_in(key(seed), S), epoch), step)``.

    ``S`` is :data:`STEP_KEY_STREAM`, which keeps these keys apart from the
    permutations'. A pure function of ``(seed, epoch, step)``, so a resumed run
    draws the dropout masks and image shifts the uninterrupted one drew.
    """
    return jax.random.fold_in(
        jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), STEP_KEY_STREAM), epoch), step
    )


def step_keys(seed: int, epoch: int, steps: int) -> np.ndarray:
    """The raw ``uint32`` data of :func:`step_key` for the steps ``0 .. steps - 1`` of ``epoch``: ``(steps, 2)``."""
    epoch_key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), STEP_KEY_STREAM), epoch)
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(epoch_key, jnp.arange(steps, dtype=jnp.uint32))
    return np.asarray(jax.random.key_data(keys))


def init_state(model: Model, config: TrainConfig, optimizer: optax.GradientTransformation) -> TrainState:
    """The state before the first step: parameters from ``key(config.seed)``, the optimizer's and the model's state."""
    params = model.init(jax.random.key(config.seed))
    return TrainState(params, optimizer.init(params), model.init_state())


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

    With ``checkpoint_dir`` the state is written atomically to
    ``checkpoint_dir/checkpoint.safetensors`` at each epoch end (by process 0 of a
    multi-host run); with ``resume`` an interrupted run continues from the
    checkpoint there (written with this same config, on any number of devices)
    up to ``config.epochs``, and ends with the parameters the uninterrupted run
    would have. ``mesh`` (default: :func:`convgrad.parallel.data_mesh` over every
    device) is where the step runs, data-parallel over its ``data`` axis.

    Raises:
      ConfigError: ``batch_size`` is not a multiple of the devices, or exceeds
        the training examples; ``resume=True`` without a ``checkpoint_dir``; a
        ``checkpoint_dir`` that cannot be written (checked before the first epoch).
      CheckpointError: ``resume=True`` and the checkpoint is missing, unreadable,
        or of another configuration (:class:`ConfigMismatchError`).
      OSError: a checkpoint cannot be written.
    """
    model = MODELS[config.model]
    mesh = parallel.data_mesh() if mesh is None else mesh
    if (problem := parallel.split_problem(config.batch_size, mesh)) is not None:
        raise ConfigError("batch_size", config.batch_size, problem)
    n_train = dataset.train_x.shape[0]
    steps = n_train // config.batch_size
    if steps < 1:
        raise ConfigError("batch_size", config.batch_size, f"exceeds the {n_train} training examples")
    if resume and checkpoint_dir is None:
        raise ConfigError("resume", resume, "needs a checkpoint_dir")
    if checkpoint_dir is not None and jax.process_index() == 0:  # the writer: fail now, not after an epoch
        if (problem := output_directory_problem(checkpoint_dir)) is not None:
            raise ConfigError("checkpoint_dir", str(checkpoint_dir), problem)
    optimizer = make_optimizer(config, steps)
    step = make_step(loss_fn(model, KITS[config.grads]), optimizer, mesh=mesh)
    evaluate = make_evaluate(model, config, mesh)

    state, history = init_state(model, config, optimizer), []
    if resume:
        state, history = resume_state(checkpoint_dir, config, state)
    state = replicate(state, mesh)
    train_x, train_y, test_x, test_y = replicate(tuple(dataset), mesh)
    batch_sharded, replicated = parallel.batch_sharded(mesh), parallel.replicated(mesh)

    device = str(mesh.devices.flat[0])
    note_every = max(1, steps // 20)
    for epoch in range(len(history), config.epochs):
        order = np.asarray(epoch_permutation(config.seed, epoch, n_train))
        keys = step_keys(config.seed, epoch, steps)
        start, total = time.perf_counter(), replicate(np.float32(0), mesh)
        in_flight: collections.deque[jax.Array] = collections.deque()
        with Progress(steps, f"epoch {epoch + 1}/{config.epochs}", enabled=progress, unit="steps") as bar:
            for i in range(steps):
                batch = parallel.global_array(order[i * config.batch_size : (i + 1) * config.batch_size], batch_sharded)
                key = parallel.global_array(keys[i], replicated)
                state, loss = step(state, train_x, train_y, batch, key)
                total = total + loss
                in_flight.append(loss)
                if len(in_flight) > STEPS_IN_FLIGHT:
                    in_flight.popleft().block_until_ready()
                note = None
                if progress and ((i + 1) % note_every == 0 or i + 1 == steps):
                    rate = (i + 1) * config.batch_size / (time.perf_counter() - start)
                    note = f"loss {float(total) / (i + 1):.4f}, {rate:,.0f} ex/s"
                bar.update(1, note=note)
        train_loss = float(total) / steps  # waits for the epoch's last step
        seconds = time.perf_counter() - start
        accuracy = evaluate(state.params, state.model_state, test_x, test_y)
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


# ---------------------------------------------------------------------------- checkpoints


def save_checkpoint(
    directory: str | Path, config: TrainConfig, state: TrainState, history: list[dict[str, Any]]
) -> Path:
    """Write ``state`` (every leaf, exactly), the config and the history atomically to ``directory/CHECKPOINT``.

    The file is a safetensors file: each leaf of ``state`` is a tensor named by
    its path (``params/conv0/w``, ``opt_state/0/mu/conv0/w``, ``opt_state/0/count``,
    ``model_state/...``); the header's metadata holds ``format``
    (``"convgrad.checkpoint"``), ``format_version``, ``convgrad_version``, and, as
    JSON, ``config`` and ``history``, plus ``sha256``, a digest of the tensors. The
    temporary files of earlier writes that a crash interrupted are removed.

    Raises:
      OSError: the directory cannot be created or written; its ``filename`` is the checkpoint's path.
    """
    tensors = _named_leaves(state)
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "format_version": str(CHECKPOINT_VERSION),
        "convgrad_version": convgrad.__version__,
        "config": json.dumps(dataclasses.asdict(config)),
        "history": json.dumps(history),
        "sha256": _digest(tensors),
    }
    path = atomic_write_bytes(Path(directory) / CHECKPOINT, safetensors.numpy.save(tensors, metadata=metadata))
    remove_leftovers(path)  # of a write that a crash interrupted
    return path


def load_checkpoint(path: str | Path) -> tuple[Params, dict[str, Any], dict[str, Any]]:
    """The parameters, the rest of the training state, and the metadata of the checkpoint file ``path``.

    Reads the file written by :func:`save_checkpoint` (or by ``convgrad train
    --checkpoint-dir``), without pickle, and checks it: the safetensors structure,
    that it is complete, that its tensors match their SHA-256, and that it is a
    convgrad checkpoint of a format this version reads.

    Returns:
      ``(params, state, meta)``: ``params``, nested dicts of NumPy arrays keyed by
      the model's names (``params["conv0"]["w"]``, HWIO ``(3, 3, 1, 32)`` for the cnn);
      ``state``, ``{"opt_state": ..., "model_state": ...}`` nested the same way
      (optax's tuples become dicts keyed ``"0"``, ``"1"``, ..., its named tuples
      dicts keyed by field: ``state["opt_state"]["0"]["mu"]``); ``meta``, with
      ``format``, ``format_version``, ``convgrad_version``, ``config`` (the
      :class:`TrainConfig` fields), ``history`` (one record per epoch done) and
      ``epochs_done``.

    Raises:
      FileNotFoundError: no file at ``path`` (other ``OSError``: it cannot be read).
      CheckpointError: the file is not a safetensors file, is truncated, its tensors
        do not match their digest, or it is not a convgrad checkpoint.
    """
    tensors, meta = _read_checkpoint(Path(path))
    nested = _nest(tensors)
    state = {"opt_state": nested.get("opt_state", {}), "model_state": nested.get("model_state", {})}
    return nested.get("params", {}), state, meta


def check_resumable(directory: str | Path, config: TrainConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The tensors and metadata of the checkpoint in ``directory``, if ``config``'s run can resume from it.

    What ``convgrad train --resume`` checks before any work; :func:`train` checks it
    again, and the tensors against the state the model builds.

    Raises:
      CheckpointError: no checkpoint in ``directory``, or an unreadable, truncated or corrupt one.
      ConfigMismatchError: the checkpoint was written with another configuration.
    """
    path = Path(directory) / CHECKPOINT
    if not path.is_file():
        legacy = Path(directory) / "checkpoint.npz"
        hint = (
            f" (the {legacy.name} there is in the NumPy format of earlier versions of convgrad, which this one "
            "does not read: start a new run)"
            if legacy.is_file()
            else ""
        )
        raise CheckpointError(path, f"no checkpoint here to resume from{hint}")
    try:
        tensors, meta = _read_checkpoint(path)
    except OSError as error:
        raise CheckpointError(path, f"cannot be read ({error.strerror or error})") from error
    saved_config = meta["config"]
    mismatched = {
        k: (v, saved_config.get(k)) for k, v in dataclasses.asdict(config).items() if saved_config.get(k) != v
    }
    if mismatched:
        raise ConfigMismatchError(path, mismatched)
    return tensors, meta


def resume_state(
    directory: str | Path, config: TrainConfig, template: TrainState
) -> tuple[TrainState, list[dict[str, Any]]]:
    """The state and history saved in ``directory``, checked against ``config`` and the structure of ``template``.

    Raises:
      CheckpointError: as :func:`check_resumable`, or the checkpoint does not hold a
        state shaped like ``template``.
      ConfigMismatchError: the checkpoint was written with another configuration.
    """
    tensors, meta = check_resumable(directory, config)
    expected = _named_leaves(template)
    problems = [f"{name} missing" for name in expected if name not in tensors]
    problems += [f"{name} unexpected" for name in tensors if name not in expected]
    problems += [
        f"{name} is {tensors[name].dtype}{list(tensors[name].shape)}, not {a.dtype}{list(a.shape)}"
        for name, a in expected.items()
        if name in tensors and (tensors[name].shape != a.shape or tensors[name].dtype != a.dtype)
    ]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        path = Path(directory) / CHECKPOINT
        raise CheckpointError(path, f"does not hold a {config.model} training state ({shown})")
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = [jnp.asarray(tensors[_leaf_name(p)]) for p, _ in paths]
    return jax.tree.unflatten(treedef, leaves), meta["history"]


def _leaf_name(path: tuple) -> str:
    """``params/conv0/w``: the keys of a leaf's path in a :class:`TrainState`, joined by ``/``."""
    parts = []
    for key in path:
        if isinstance(key, jax.tree_util.DictKey):
            parts.append(str(key.key))
        elif isinstance(key, jax.tree_util.SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, jax.tree_util.GetAttrKey):
            parts.append(key.name)
        else:  # FlattenedIndexKey of a custom pytree
            parts.append(str(key.key))
    return "/".join(parts)


def _named_leaves(state: TrainState) -> dict[str, np.ndarray]:
    """Every leaf of ``state`` as a NumPy array, by its :func:`_leaf_name` (top level: the field names)."""
    named = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        name = _leaf_name(path)
        if name in named:
            raise ValueError(f"save_checkpoint: two leaves of the state are both named {name!r}")
        named[name] = np.asarray(leaf)
    return named


def _digest(tensors: dict[str, np.ndarray]) -> str:
    """SHA-256 over the tensors in name order: each one's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        digest.update(f"{name}\0{array.dtype.str}\0{list(array.shape)}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _nest(tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    """``{"a/b": x}`` -> ``{"a": {"b": x}}``."""
    nested: dict[str, Any] = {}
    for name, array in tensors.items():
        *parents, leaf = name.split("/")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = array
    return nested


def _read_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The tensors by name and the parsed metadata of a checkpoint file, every part of it checked."""
    content = path.read_bytes()
    header = _safetensors_header(path, content)
    try:
        tensors = safetensors.numpy.load(content)
    except safetensors.SafetensorError as error:
        raise CheckpointError(path, f"not a valid safetensors file ({error})") from None
    metadata = header.get("__metadata__") or {}
    if metadata.get("format") != CHECKPOINT_FORMAT:
        problem = f"a safetensors file but not a convgrad checkpoint (no format={CHECKPOINT_FORMAT!r} in its metadata)"
        raise CheckpointError(path, problem)
    try:
        version = int(metadata.get("format_version", ""))
    except ValueError:
        raise CheckpointError(path, f"corrupt: format_version={metadata.get('format_version')!r}") from None
    if version > CHECKPOINT_VERSION:
        problem = f"written in checkpoint format {version} by a newer convgrad; this one reads {CHECKPOINT_VERSION}"
        raise CheckpointError(path, problem)
    if metadata.get("sha256") != _digest(tensors):
        raise CheckpointError(path, "corrupt: its tensors do not match the SHA-256 recorded when it was written")
    meta: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": version,
        "convgrad_version": metadata.get("convgrad_version"),
    }
    for key in ("config", "history"):
        try:
            meta[key] = json.loads(metadata[key])
        except (KeyError, json.JSONDecodeError) as error:
            raise CheckpointError(path, f"corrupt: its {key} metadata is missing or not JSON ({error})") from None
    meta["epochs_done"] = len(meta["history"])
    return tensors, meta


_MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit


def _safetensors_header(path: Path, content: bytes) -> dict[str, Any]:
    """The JSON header of a safetensors file, or a :class:`CheckpointError` that says in words what is wrong.

    The layout: an 8-byte little-endian header length ``n``, ``n`` bytes of JSON
    (each tensor's dtype, shape and ``data_offsets`` into the rest), then the data.
    """
    if len(content) <= 8:
        raise CheckpointError(path, f"truncated: {len(content)} bytes, less than a safetensors file's start")
    (n,) = struct.unpack("<Q", content[:8])
    if content[8:9] != b"{" or n > _MAX_HEADER_BYTES:
        zip_file = (
            " (a zip file, as the .npz checkpoints of earlier convgrad versions were)" if content[:2] == b"PK" else ""
        )
        raise CheckpointError(path, f"not a safetensors file: no JSON header after its first 8 bytes{zip_file}")
    if 8 + n > len(content):
        raise CheckpointError(path, f"truncated: its header needs {8 + n} bytes, the file holds {len(content)}")
    try:
        header = json.loads(content[8 : 8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(path, f"not a safetensors file (its header is not JSON: {error})") from None
    if not isinstance(header, dict):
        raise CheckpointError(path, "not a safetensors file (its header is not a JSON object)")
    try:
        data_bytes = max([entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"] or [0])
    except (TypeError, KeyError, IndexError):
        raise CheckpointError(path, "not a valid safetensors file (a tensor entry has no data_offsets)") from None
    have = len(content) - 8 - n
    if have < data_bytes:
        raise CheckpointError(path, f"truncated: its tensors need {data_bytes} bytes after the header, it holds {have}")
    if have > data_bytes:
        raise CheckpointError(path, f"corrupt: {have - data_bytes} bytes after the last tensor")
    return header

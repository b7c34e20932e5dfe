"""Training: determinism, exact resume, atomic checkpoints, custom == autodiff gradients, real-MNIST accuracy."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convgrad import cli, parallel, testing, train
from convgrad.models import KITS, MODELS, Model, loss_fn, make_cnn
from convgrad.ops import conv_formulations


def tiny_dataset(n_train: int = 192, n_test: int = 64) -> train.Dataset:
    return train.synthetic_dataset(n_train, n_test)


TINY = train.TrainConfig(model="mlp", epochs=3, batch_size=32, lr=1e-3, seed=3)


def _leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(state)]


class Interrupted(Exception):
    pass


def _interrupt_after(epochs: int):
    """An ``on_epoch`` callback that stops the run, as a crash would, once ``epochs`` epochs are checkpointed."""

    def on_epoch(record):
        if record["epoch"] == epochs:
            raise Interrupted

    return on_epoch


def _run_until(epochs, config, data, directory):
    with pytest.raises(Interrupted):
        train.train(config, data, checkpoint_dir=directory, progress=False, on_epoch=_interrupt_after(epochs))


def test_same_seed_same_result():
    data = tiny_dataset()
    first, report_a = train.train(TINY, data, progress=False)
    second, report_b = train.train(TINY, data, progress=False)
    for a, b in zip(_leaves(first), _leaves(second), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [r["train_loss"] for r in report_a["history"]] == [r["train_loss"] for r in report_b["history"]]


def test_training_learns_the_tiny_task():
    _, report = train.train(TINY, tiny_dataset(), progress=False)
    losses = [r["train_loss"] for r in report["history"]]
    assert losses[-1] < losses[0]


def test_other_seed_other_result():
    data = tiny_dataset()
    first, _ = train.train(TINY, data, progress=False)
    other, _ = train.train(train.TrainConfig(**{**vars(TINY), "seed": 4}), data, progress=False)
    assert not np.array_equal(_leaves(first)[0], _leaves(other)[0])


def test_resume_ends_with_the_uninterrupted_parameters(tmp_path):
    data = tiny_dataset()
    uninterrupted, full_report = train.train(TINY, data, progress=False)
    _run_until(2, TINY, data, tmp_path)
    resumed, resumed_report = train.train(TINY, data, checkpoint_dir=tmp_path, resume=True, progress=False)
    for a, b in zip(_leaves(uninterrupted), _leaves(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [r["train_loss"] for r in resumed_report["history"]] == [r["train_loss"] for r in full_report["history"]]


def test_checkpoint_is_written_atomically(tmp_path, monkeypatch):
    """A crash while writing leaves the previous checkpoint intact and no partial file behind."""
    data = tiny_dataset()
    _run_until(1, TINY, data, tmp_path)
    before = (tmp_path / train.CHECKPOINT).read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        train.train(TINY, data, checkpoint_dir=tmp_path, resume=True, progress=False)
    assert (tmp_path / train.CHECKPOINT).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [train.CHECKPOINT]


def test_resume_refuses_another_configuration(tmp_path):
    data = tiny_dataset()
    _run_until(1, TINY, data, tmp_path)
    with pytest.raises(ValueError, match=r"lr=0.01 but the checkpoint has 0.001"):
        train.train(
            train.TrainConfig(**{**vars(TINY), "lr": 0.01}), data, checkpoint_dir=tmp_path, resume=True, progress=False
        )


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(train.CheckpointError, match=r"checkpoint\.safetensors: no checkpoint here to resume from"):
        train.train(TINY, tiny_dataset(), checkpoint_dir=tmp_path, resume=True, progress=False)


def test_an_unusable_checkpoint_dir_is_refused_before_the_first_epoch(tmp_path):
    existing = tmp_path / "file"
    existing.write_text("")
    with pytest.raises(train.ConfigError, match=f"^train: checkpoint_dir='{existing}' is a file, not a directory$"):
        train.train(TINY, tiny_dataset(), checkpoint_dir=existing, progress=False, on_epoch=_interrupt_after(1))


def test_resume_needs_a_checkpoint_dir_and_says_so_in_the_library_names():
    with pytest.raises(train.ConfigError, match=r"^train: resume=True needs a checkpoint_dir$"):
        train.train(TINY, tiny_dataset(), resume=True, progress=False)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("model", "vgg", "model='vgg' is not one of"),
        ("batch_size", 0, "batch_size=0 is not a positive int"),
        ("epochs", 2.5, "epochs=2.5 is not a positive int"),
        ("lr", 0.0, "lr=0.0 is not positive"),
        ("grads", "numeric", "grads='numeric' is not one of"),
        ("optimizer", "rmsprop", r"optimizer='rmsprop' is not one of \['adam', 'sgd'\]"),
        ("schedule", "linear", r"schedule='linear' is not one of \['cosine', 'constant'\]"),
        ("weight_decay", -0.1, "weight_decay=-0.1 is negative"),
        ("weight_decay", float("-inf"), "weight_decay=-inf is negative"),
        ("weight_decay", "0.1", "weight_decay='0.1' is not a number"),
    ],
)
def test_bad_config(field, value, message):
    with pytest.raises(train.ConfigError, match=f"^train: {message}") as raised:
        train.TrainConfig(**{**vars(TINY), field: value})
    assert raised.value.argument == field and raised.value.value == value


def test_lr_and_weight_decay_none_are_the_models_recipe_written_into_the_config():
    for name, model in MODELS.items():
        config = train.TrainConfig(model=name)
        assert (config.lr, config.weight_decay) == (model.lr, model.weight_decay)
        config = train.TrainConfig(model=name, lr=0.5, weight_decay=0.25)
        assert (config.lr, config.weight_decay) == (0.5, 0.25)
    assert any(model.weight_decay > 0 for model in MODELS.values())  # a recipe uses each
    assert len({model.lr for model in MODELS.values()}) > 1
    with pytest.raises(train.ConfigError, match=r"weight_decay=nan is negative \(or NaN\)"):
        train.TrainConfig(weight_decay=float("nan"))


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_weight_decay_shrinks_the_kernels_and_dense_weights_only(optimizer):
    """With zero gradients, the first step is the decay alone, on the arrays of 2 or more dimensions.

    Adam's update of a zero gradient is 0 (``m / (sqrt(v) + eps)`` with ``m = v = 0``),
    so AdamW moves ``p`` by ``-lr * weight_decay * p``; SGD's first momentum trace is
    the gradient plus ``weight_decay * p``: the same step.
    """
    lr, decay = 0.1, 0.5
    config = train.TrainConfig(model="cnn", optimizer=optimizer, lr=lr, weight_decay=decay, schedule="constant")
    params = {"w": jnp.full((3, 2), 2.0), "kernel": jnp.full((1, 1, 2, 2), -4.0), "b": jnp.ones(2)}
    optimizer = train.make_optimizer(config, 10)
    updates, _ = optimizer.update(jax.tree.map(jnp.zeros_like, params), optimizer.init(params), params)
    np.testing.assert_allclose(updates["w"], -lr * decay * 2.0)
    np.testing.assert_allclose(updates["kernel"], -lr * decay * -4.0)
    np.testing.assert_array_equal(updates["b"], 0.0)


def test_no_weight_decay_is_plain_adam():
    config = train.TrainConfig(model="mlp", weight_decay=0.0)
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    grads = {"w": jnp.full((2, 2), 0.3), "b": jnp.full(2, -0.2)}
    ours, plain = train.make_optimizer(config, 10), train.optax.adam(train.optax.cosine_decay_schedule(2e-3, 50))
    got, _ = ours.update(grads, ours.init(params), params)
    want, _ = plain.update(grads, plain.init(params), params)
    for name in params:
        np.testing.assert_array_equal(got[name], want[name])


def test_the_loss_smooths_the_labels_by_the_models_recipe():
    """``(1 - e) (-log p[t]) + (e / 10) sum_c (-log p[c])``, written out here from log-softmax."""
    e = 0.2
    model = make_cnn(label_smoothing=e)
    params = model.init(jax.random.key(0))
    images = jax.random.normal(jax.random.key(1), (4, 28, 28), jnp.float32)
    labels = jnp.array([0, 3, 9, 3])
    logits, _ = model.apply(KITS["autodiff"], params, {}, images, True)
    nll = -jax.nn.log_softmax(logits)
    want = jnp.mean((1 - e) * nll[jnp.arange(4), labels] + e / 10 * jnp.sum(nll, axis=1))
    for kit in KITS.values():
        got, _ = loss_fn(model, kit)(params, {}, images, labels)
        np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_custom_and_autodiff_gradients_agree(name):
    """From the same parameters, batch and key, convgrad's VJPs and jax.grad give the same gradient.

    In float64: in float32 the im2col forward of the resnet's stem rounds
    differently from lax's convolution, and on these synthetic images that flips
    the switch of some near-tied stem max-pool windows, where the gradient is not
    unique (measured: the stem's offset gradient then differs from the float64
    one by 1.3e-3 of its largest element, and by 2e-6 once the images carry 0.01
    uniform noise). With the key, the cnn's dropout masks and image shifts are
    drawn (the same in either kit); the resnet's new running statistics agree too.
    """
    data = tiny_dataset()
    model = MODELS[name]
    wide = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)
    params = wide(model.init(jax.random.key(0)))
    images = jnp.asarray(data.train_x[:32], jnp.float64)
    batch = (wide(model.init_state()), images, data.train_y[:32], jax.random.key(11))
    custom, custom_state = jax.jit(jax.grad(loss_fn(model, KITS["custom"]), has_aux=True))(params, *batch)
    autodiff, autodiff_state = jax.jit(jax.grad(loss_fn(model, KITS["autodiff"]), has_aux=True))(params, *batch)
    for path, got in jax.tree_util.tree_leaves_with_path(custom):
        want = dict(jax.tree_util.tree_leaves_with_path(autodiff))[path]
        testing.assert_close(got, np.asarray(want, np.float64), what=f"{name} gradient {jax.tree_util.keystr(path)}")
    assert jax.tree.structure(custom_state) == jax.tree.structure(autodiff_state)
    for path, got in jax.tree_util.tree_leaves_with_path(custom_state):
        want = dict(jax.tree_util.tree_leaves_with_path(autodiff_state))[path]
        testing.assert_close(got, np.asarray(want, np.float64), what=f"{name} state {jax.tree_util.keystr(path)}")


def _twenty_steps(name, optimizer):
    """The parameters after 20 steps of ``name`` (batch 16) on each gradient path: ``(custom, autodiff)``."""
    data = tiny_dataset(n_train=20 * 16)
    results = []
    for grads in ("custom", "autodiff"):
        config = train.TrainConfig(
            model=name, epochs=1, batch_size=16, lr=1e-3, seed=1, grads=grads, optimizer=optimizer
        )
        state, report = train.train(config, data, progress=False)
        assert report["steps_per_epoch"] == 20
        results.append(state.params)
    return results


@pytest.mark.parametrize("name", list(MODELS))
def test_twenty_steps_agree(name, monkeypatch):
    """A short run on each gradient path ends with parameters equal to ~1e-4 relative (float32, 20 SGD steps).

    convgrad's convolutions are the textbook ones here (lax convolutions for the
    forward and both gradients), so the runs differ only in the hand-derived VJPs.
    The default CPU formulations (im2col, Winograd) round differently from lax's
    convolutions, forward included (README, "Train"). Their gradients are checked
    against float64 references by the registry (test_registry.py).

    SGD with momentum, not Adam: Adam divides each gradient element by its running
    RMS, which grows float32 rounding on near-zero gradient elements by an amount
    that depends on how XLA compiled the step. Measured on the 2-core AMD machine
    (docs/performance.md), the worst array's relative difference after 20 steps,
    cnn / resnet: SGD 1.2e-7 / 9.5e-8 with XLA's defaults and 8.2e-8 / 6.0e-8 with
    the suite's flags (tests/compile_flags.py); Adam 1.1e-4 / 7.4e-4 with XLA's
    defaults and 1.1e-4 / 2.9e-2 with the suite's flags (the resnet without its
    label smoothing; on its batch norms' offsets), a trajectory effect of Adam's
    normalization, not a gradient error (test_custom_and_autodiff_gradients_agree
    compares one step's gradients).

    What it can see: over the 20 SGD steps each array moves by a share of its
    largest element of 0.4% to 38% (cnn; median 6.5%) and 0.01% to 46% (resnet;
    median 0.24%), so at rtol 1e-4 a gradient error of about 0.15% in the median cnn
    array, or 4% in the median resnet one, fails it. Smaller gradient errors are the
    registry's and test_custom_and_autodiff_gradients_agree's to catch (float64).
    """
    monkeypatch.setitem(conv_formulations.FORMULATIONS, "auto", conv_formulations.FORMULATIONS["textbook"])
    custom, autodiff = _twenty_steps(name, "sgd")
    for got, want in zip(jax.tree.leaves(custom), jax.tree.leaves(autodiff), strict=True):
        testing.assert_close(got, np.asarray(want, np.float64), rtol=1e-4, atol=1e-6, what=f"{name} after 20 steps")


def test_mlp_reaches_97_percent_in_one_epoch(mnist_path):
    """The quick check anyone can run (`convgrad train --model mlp --epochs 1`): the defaults, one epoch, real MNIST."""
    config = train.TrainConfig(model="mlp", epochs=1)
    _, report = train.train(config, train.load_dataset(mnist_path, progress=False), progress=False)
    assert report["test_accuracy"] >= 0.97


def test_cli_train_writes_the_report(mnist_path, tmp_path, capsys):
    report_path = tmp_path / "report.json"
    status = cli.main(
        [
            "train",
            "--model",
            "linear",
            "--epochs",
            "1",
            "--data-dir",
            str(mnist_path),
            "--json",
            str(report_path),
            "--checkpoint-dir",
            str(tmp_path / "ckpt"),
            "--no-progress",
        ]
    )
    assert status == 0
    report = json.loads(report_path.read_text())
    assert report["model"] == "linear" and report["grads"] == "custom" and report["epochs"] == 1
    assert len(report["history"]) == 1 and {"train_loss", "seconds"} <= set(report["history"][0])
    assert 0.85 < report["test_accuracy"] <= 1.0 and report["device"]
    assert (tmp_path / "ckpt" / train.CHECKPOINT).is_file()
    assert "test accuracy" in capsys.readouterr().out


def test_cli_train_without_data_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["train", "--data-dir", str(tmp_path), "--no-progress"]) == cli.ExitCode.DATA
    assert capsys.readouterr().err.startswith(f"convgrad: train: MNIST files missing from {tmp_path}")


# ---------------------------------------------------------------------------- a model with state


def _counting_model() -> Model:
    """The linear model, plus a state that counts the training steps; evaluation predicts ``steps % 10`` for all.

    A stand-in for batch normalization's running statistics: the state changes in
    every training step, and evaluation reads it (and only it).
    """
    linear = MODELS["linear"]

    def apply(kit, params, model_state, images, training, key=None):
        if training:
            logits, _ = linear.apply(kit, params, {}, images, True)
            return logits, {"steps": model_state["steps"] + 1}
        predicted = jax.nn.one_hot(model_state["steps"] % 10, 10)
        return jnp.broadcast_to(100.0 * predicted, (images.shape[0], 10)), model_state

    return Model("counting", "linear, counting its steps", linear.init, apply, lambda: {"steps": jnp.int32(0)})


@pytest.fixture
def counting(monkeypatch) -> train.TrainConfig:
    monkeypatch.setitem(MODELS, "counting", _counting_model())
    return train.TrainConfig(**{**vars(TINY), "model": "counting"})  # 6 steps per epoch of tiny_dataset


def test_the_model_state_goes_through_every_step_and_evaluation_reads_it(counting):
    data = tiny_dataset()
    state, report = train.train(counting, data, progress=False)
    assert int(state.model_state["steps"]) == 3 * 6
    labels = np.asarray(data.test_y)
    assert [r["test_accuracy"] for r in report["history"]] == [np.mean(labels == s % 10) for s in (6, 12, 18)]
    linear, _ = train.train(train.TrainConfig(**{**vars(TINY), "model": "linear"}), data, progress=False)
    for a, b in zip(jax.tree.leaves(linear.params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_array_equal(a, b)  # the state does not change the trained parameters


def test_the_model_state_is_checkpointed_and_resumed_exactly(counting, tmp_path):
    data = tiny_dataset()
    uninterrupted, report = train.train(counting, data, progress=False)
    _run_until(1, counting, data, tmp_path)
    _, saved, _ = train.load_checkpoint(tmp_path / train.CHECKPOINT)
    assert int(saved["model_state"]["steps"]) == 6
    resumed, resumed_report = train.train(counting, data, checkpoint_dir=tmp_path, resume=True, progress=False)
    for a, b in zip(_leaves(uninterrupted), _leaves(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(resumed.model_state["steps"]) == 18
    assert [r["test_accuracy"] for r in resumed_report["history"]] == [r["test_accuracy"] for r in report["history"]]


# ---------------------------------------------------------------------------- the cnn in either layout


def test_the_cnn_in_nchw_computes_the_nhwc_function(monkeypatch):
    """One definition, two layouts: from the same key, the same logits and the same gradients (transposed)."""
    monkeypatch.setitem(conv_formulations.FORMULATIONS, "auto", conv_formulations.FORMULATIONS["textbook"])
    nhwc, nchw = make_cnn("NHWC"), make_cnn("NCHW")
    params_nhwc, params_nchw = nhwc.init(jax.random.key(0)), nchw.init(jax.random.key(0))
    np.testing.assert_array_equal(params_nchw["conv1"]["w"], np.transpose(params_nhwc["conv1"]["w"], (3, 2, 0, 1)))
    images, labels = tiny_dataset(n_train=8).train_x[:8], tiny_dataset(n_train=8).train_y[:8]
    results = []
    for model, params in ((nhwc, params_nhwc), (nchw, params_nchw)):
        loss = loss_fn(model, KITS["custom"])
        (value, _), grads = jax.value_and_grad(loss, has_aux=True)(params, {}, images, labels)
        results.append((value, grads))
    (value_nhwc, grads_nhwc), (value_nchw, grads_nchw) = results
    testing.assert_close(value_nchw, np.float64(value_nhwc), what="loss")
    testing.assert_close(
        np.transpose(grads_nchw["conv0"]["w"], (2, 3, 1, 0)), np.asarray(grads_nhwc["conv0"]["w"], np.float64),
        what="conv0 weight gradient",
    )  # fmt: skip
    testing.assert_close(grads_nchw["dense1"]["w"], np.asarray(grads_nhwc["dense1"]["w"], np.float64), what="dense1")


def test_the_step_on_a_mesh_runs_with_or_without_a_key():
    """``step(state, images, labels, batch)`` and ``step(..., batch, key)``: a loss of four or five arguments."""
    mesh = parallel.data_mesh(1)
    model, optimizer = MODELS["linear"], train.make_optimizer(TINY, 6)
    step = train.make_step(loss_fn(model, KITS["custom"]), optimizer, mesh=mesh, donate=False)
    state = train.replicate(train.init_state(model, TINY, optimizer), mesh)
    data = tiny_dataset()
    batch = parallel.global_array(np.arange(32, dtype=np.int32), parallel.batch_sharded(mesh))
    plain, _ = step(state, data.train_x, data.train_y, batch)
    keyed, _ = step(state, data.train_x, data.train_y, batch, train.step_keys(0, 0, 1)[0])
    for a, b in zip(_leaves(plain), _leaves(keyed), strict=True):
        np.testing.assert_array_equal(a, b)  # the linear model draws nothing: the key changes nothing

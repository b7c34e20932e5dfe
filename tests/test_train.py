"""Training: determinism, exact resume, atomic checkpoints, custom == autodiff gradients, real-MNIST accuracy."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convgrad import cli, testing, train
from convgrad.models import KITS, MODELS, loss_fn
from convgrad.ops import conv_formulations


def tiny_dataset(n_train: int = 192, n_test: int = 64, seed: int = 0) -> train.Dataset:
    """Random images whose labels a linear classifier can learn (a fixed random projection's argmax)."""
    rng = np.random.default_rng(seed)
    projection = rng.standard_normal((784, 10))
    images = rng.standard_normal((n_train + n_test, 28, 28)).astype(np.float32)
    labels = np.argmax(images.reshape(len(images), -1) @ projection, axis=1).astype(np.int32)
    return train.Dataset(
        jnp.asarray(images[:n_train]),
        jnp.asarray(labels[:n_train]),
        jnp.asarray(images[n_train:]),
        jnp.asarray(labels[n_train:]),
    )


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
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        train.train(TINY, tiny_dataset(), checkpoint_dir=tmp_path, resume=True, progress=False)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("model", "resnet", "model='resnet' is not one of"),
        ("batch_size", 0, "batch_size must be a positive int"),
        ("lr", 0.0, "lr must be positive"),
        ("grads", "numeric", "grads='numeric' is not one of"),
    ],
)
def test_bad_config(field, value, message):
    with pytest.raises(ValueError, match=message):
        train.TrainConfig(**{**vars(TINY), field: value})


@pytest.mark.parametrize("name", list(MODELS))
def test_custom_and_autodiff_gradients_agree(name):
    """From the same parameters and batch, convgrad's VJPs and jax.grad give the same gradient (float32)."""
    data = tiny_dataset()
    model = MODELS[name]
    params = model.init(jax.random.key(0))
    batch = (data.train_x[:32], data.train_y[:32])
    custom = jax.jit(jax.grad(loss_fn(model, KITS["custom"])))(params, *batch)
    autodiff = jax.jit(jax.grad(loss_fn(model, KITS["autodiff"])))(params, *batch)
    for path, got in jax.tree_util.tree_leaves_with_path(custom):
        want = dict(jax.tree_util.tree_leaves_with_path(autodiff))[path]
        testing.assert_close(got, np.asarray(want, np.float64), what=f"{name} gradient {jax.tree_util.keystr(path)}")


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
    """A short run on each gradient path ends with parameters equal to ~1e-4 relative (float32, 20 Adam steps).

    convgrad's convolutions are the textbook ones here (lax convolutions for the
    forward and both gradients), so the runs differ only in the hand-derived VJPs.
    The default CPU formulations (im2col, Winograd) round differently from lax's
    convolutions, forward included, and Adam, which divides each gradient element by
    its running RMS, grows that on near-zero gradient elements: 2.8e-3 relative on
    the worst array after 20 steps (README, "Train"). Their gradients are checked
    against float64 references by the registry (test_registry.py).
    """
    monkeypatch.setitem(conv_formulations.FORMULATIONS, "auto", conv_formulations.FORMULATIONS["textbook"])
    custom, autodiff = _twenty_steps(name, "adam")
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


def test_cli_train_without_data_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="MNIST files missing"):
        cli.main(["train", "--data-dir", str(tmp_path), "--no-progress"])

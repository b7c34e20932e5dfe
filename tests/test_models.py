"""The models: the resnet's batch-norm state (carried, checkpointed, resumed, read in evaluation), its gradients on
either kit, the step keys of the training randomness, and the image shifts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

from convgrad import testing, train
from convgrad.models import KITS, MODELS, Model, loss_fn, make_resnet, random_shift
from convgrad.ops import conv_formulations

# A resnet small enough for tests (make_resnet as MODELS["resnet"], narrower), with image shifts, so a run
# draws random numbers in every step.
TINY_RESNET = make_resnet("NHWC", 4, ((4, 1), (8, 2)), shift=1)
CONFIG = train.TrainConfig(model="resnet", epochs=3, batch_size=16, lr=1e-3, seed=7)  # 6 steps per epoch below
UNITS = ("stem", "block0/conv0", "block0/conv1", "block1/conv0", "block1/conv1", "block1/projection")


def tiny_dataset() -> train.Dataset:
    return train.synthetic_dataset(96, 48, seed=4)


@pytest.fixture
def tiny_resnet(monkeypatch) -> train.TrainConfig:
    monkeypatch.setitem(MODELS, "resnet", TINY_RESNET)
    return CONFIG


def _unit(tree, path):
    for part in path.split("/"):
        tree = tree[part]
    return tree


def _leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(state)]


def _run_until(epochs, config, data, directory):
    class Interrupted(Exception):
        pass

    def on_epoch(record):
        if record["epoch"] == epochs:
            raise Interrupted

    with pytest.raises(Interrupted):
        train.train(config, data, checkpoint_dir=directory, progress=False, on_epoch=on_epoch)


# ---------------------------------------------------------------------------- the resnet's state


def test_a_training_step_updates_every_running_statistic_by_the_batch_statistics():
    """Training returns ``(1 - 0.1) running + 0.1 batch`` per channel; the stem's from its convolution's output."""
    params, state = TINY_RESNET.init(jax.random.key(0)), TINY_RESNET.init_state()
    images = tiny_dataset().train_x[:16]
    _, new_state = TINY_RESNET.apply(KITS["custom"], params, state, images, True)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    for path in UNITS:  # every unit's statistics moved away from (0, 1)
        assert not np.array_equal(_unit(new_state, path)["mean"], _unit(state, path)["mean"]), path
        assert not np.array_equal(_unit(new_state, path)["var"], _unit(state, path)["var"]), path
    # the stem: its input is the images, so its batch statistics are those of one convolution, in float64 here
    w = np.asarray(params["stem"]["w"], np.float64)  # HWIO (3, 3, 1, 4)
    x = np.pad(np.asarray(images, np.float64), ((0, 0), (1, 1), (1, 1)))
    conv = sum(x[:, i : i + 28, j : j + 28, None] * w[i, j, 0] for i in range(3) for j in range(3))  # (N, 28, 28, 4)
    m = conv.shape[0] * 28 * 28
    testing.assert_close(_unit(new_state, "stem")["mean"], 0.1 * conv.mean(axis=(0, 1, 2)), what="stem mean")
    unbiased = conv.var(axis=(0, 1, 2)) * m / (m - 1)
    testing.assert_close(_unit(new_state, "stem")["var"], 0.9 + 0.1 * unbiased, what="stem var")


def test_evaluation_reads_the_running_statistics_and_returns_them_unchanged():
    params, state = TINY_RESNET.init(jax.random.key(0)), TINY_RESNET.init_state()
    images = tiny_dataset().train_x[:16]
    kit = KITS["custom"]
    _, trained_state = TINY_RESNET.apply(kit, params, state, images, True)
    logits, returned = TINY_RESNET.apply(kit, params, trained_state, images, False)
    for a, b in zip(_leaves(returned), _leaves(trained_state), strict=True):
        np.testing.assert_array_equal(a, b)
    # each example's logits are its own: the same alone as in the batch (batch statistics would couple them)
    alone, _ = TINY_RESNET.apply(kit, params, trained_state, images[3:4], False)
    testing.assert_close(alone[0], np.asarray(logits[3], np.float64), what="logits of example 3 alone")
    # and they are the running statistics': other statistics, other logits
    other, _ = TINY_RESNET.apply(kit, params, state, images, False)
    assert not np.allclose(other, logits)
    # in training, the batch statistics couple the examples
    training_alone, _ = TINY_RESNET.apply(kit, params, state, images[3:5], True)
    training_batch, _ = TINY_RESNET.apply(kit, params, state, images, True)
    assert not np.allclose(training_alone[0], training_batch[3], rtol=1e-3)


def test_the_resnet_in_nchw_computes_the_nhwc_function(monkeypatch):
    """From one key, the NCHW resnet's parameters are the NHWC ones transposed, with the same logits and state."""
    monkeypatch.setitem(conv_formulations.FORMULATIONS, "auto", conv_formulations.FORMULATIONS["textbook"])
    nhwc, nchw = make_resnet("NHWC", 4, ((4, 1), (8, 2))), make_resnet("NCHW", 4, ((4, 1), (8, 2)))
    params_nhwc, params_nchw = nhwc.init(jax.random.key(1)), nchw.init(jax.random.key(1))
    np.testing.assert_array_equal(
        params_nchw["block1"]["conv0"]["w"], np.transpose(params_nhwc["block1"]["conv0"]["w"], (3, 2, 0, 1))
    )
    images = tiny_dataset().train_x[:8]
    logits_nhwc, state_nhwc = nhwc.apply(KITS["custom"], params_nhwc, nhwc.init_state(), images, True)
    logits_nchw, state_nchw = nchw.apply(KITS["custom"], params_nchw, nchw.init_state(), images, True)
    testing.assert_close(logits_nchw, np.asarray(logits_nhwc, np.float64), what="logits")
    for a, b in zip(jax.tree.leaves(state_nchw), jax.tree.leaves(state_nhwc), strict=True):
        testing.assert_close(a, np.asarray(b, np.float64), what="running statistics")


# ---------------------------------------------------------------------------- the state through training


def test_training_carries_the_state_through_every_step(tiny_resnet):
    """The state after a run is the one the steps carried: re-running the steps by hand gives it exactly."""
    data = tiny_dataset()
    config = train.TrainConfig(**{**vars(tiny_resnet), "epochs": 1})
    state, _ = train.train(config, data, progress=False)
    optimizer = train.make_optimizer(config, 6)
    step = train.make_step(loss_fn(TINY_RESNET, KITS["custom"]), optimizer)
    by_hand = train.init_state(TINY_RESNET, config, optimizer)
    order, keys = np.asarray(train.epoch_permutation(config.seed, 0, 96)), train.step_keys(config.seed, 0, 6)
    for i in range(6):
        by_hand, _ = step(by_hand, data.train_x, data.train_y, order[i * 16 : (i + 1) * 16], keys[i])
    for a, b in zip(_leaves(state), _leaves(by_hand), strict=True):
        np.testing.assert_array_equal(a, b)
    stem = _unit(state.model_state, "stem")["var"]
    assert not np.array_equal(stem, np.ones_like(stem))


def test_the_checkpoint_holds_the_running_statistics_under_their_names(tiny_resnet, tmp_path):
    state, _ = train.train(tiny_resnet, tiny_dataset(), checkpoint_dir=tmp_path, progress=False)
    tensors = safetensors.numpy.load_file(tmp_path / train.CHECKPOINT)
    names = {name for name in tensors if name.startswith("model_state/")}
    assert names == {f"model_state/{unit}/{stat}" for unit in UNITS for stat in ("mean", "var")}
    for unit in UNITS:
        np.testing.assert_array_equal(tensors[f"model_state/{unit}/var"], _unit(state.model_state, unit)["var"])
    _, saved, _ = train.load_checkpoint(tmp_path / train.CHECKPOINT)
    np.testing.assert_array_equal(saved["model_state"]["block1"]["projection"]["mean"],
                                  state.model_state["block1"]["projection"]["mean"])  # fmt: skip


def test_a_resumed_resnet_ends_bit_identical_to_the_uninterrupted_run(tiny_resnet, tmp_path):
    """Parameters, optimizer state, running statistics and every epoch's loss and accuracy, bit for bit."""
    data = tiny_dataset()
    uninterrupted, report = train.train(tiny_resnet, data, progress=False)
    _run_until(1, tiny_resnet, data, tmp_path)
    resumed, resumed_report = train.train(tiny_resnet, data, checkpoint_dir=tmp_path, resume=True, progress=False)
    for a, b in zip(_leaves(uninterrupted), _leaves(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    for key in ("train_loss", "test_accuracy"):
        assert [r[key] for r in resumed_report["history"]] == [r[key] for r in report["history"]]


# ---------------------------------------------------------------------------- the randomness of a step


def _key_recording_model() -> Model:
    """The linear model, whose state is the raw data of the last training step's key."""
    linear = MODELS["linear"]

    def apply(kit, params, model_state, images, training, key=None):
        logits, _ = linear.apply(kit, params, {}, images, training)
        return logits, ({"key": jax.random.key_data(key)} if training else model_state)

    return Model("keys", "linear, keeping its last key", linear.init, apply, lambda: {"key": jnp.zeros(2, jnp.uint32)})


def test_each_step_gets_the_key_of_its_seed_epoch_and_step(monkeypatch):
    monkeypatch.setitem(MODELS, "keys", _key_recording_model())
    config = train.TrainConfig(model="keys", epochs=2, batch_size=16, seed=5)
    state, _ = train.train(config, tiny_dataset(), progress=False)
    np.testing.assert_array_equal(state.model_state["key"], jax.random.key_data(train.step_key(5, 1, 5)))


def test_step_keys_are_those_of_step_key_and_all_differ():
    keys = {
        (seed, epoch): train.step_keys(seed, epoch, 4) for seed in (0, 1) for epoch in (0, 1, 2)
    }  # fmt: skip
    for (seed, epoch), batch in keys.items():
        for step in range(4):
            np.testing.assert_array_equal(batch[step], jax.random.key_data(train.step_key(seed, epoch, step)))
    rows = {tuple(row) for batch in keys.values() for row in batch}
    assert len(rows) == 2 * 3 * 4
    permutation_keys = {tuple(np.asarray(jax.random.key_data(jax.random.fold_in(jax.random.key(s), e))))
                        for s in (0, 1) for e in (0, 1, 2)}  # fmt: skip
    assert not rows & permutation_keys


def test_random_shift_moves_each_image_by_at_most_the_shift_and_reaches_every_offset():
    """A single bright pixel at (14, 14) lands at (14 + dy, 14 + dx), |dy|, |dx| <= 2; all 25 offsets occur."""
    images = jnp.zeros((500, 28, 28)).at[:, 14, 14].set(1.0)
    shifted = np.asarray(random_shift(images, jax.random.key(0), 2))
    assert shifted.shape == (500, 28, 28) and np.all(shifted.sum(axis=(1, 2)) == 1.0)
    rows, cols = np.divmod(np.argmax(shifted.reshape(500, -1), axis=1), 28)
    offsets = {(int(r) - 14, int(c) - 14) for r, c in zip(rows, cols)}
    assert offsets == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}


def test_random_shift_fills_with_the_border():
    """A shifted image's new rows and columns repeat its edge (MNIST's background), never zeros."""
    image = jnp.full((1, 28, 28), -0.5).at[0, 10:18, 10:18].set(2.0)
    for seed in range(5):
        shifted = np.asarray(random_shift(image, jax.random.key(seed), 3))
        assert set(np.unique(shifted)) == {-0.5, 2.0} and np.sum(shifted == 2.0) == 64

"""Checkpoints: safetensors files that other tools read, keyed by the parameter names, with normal permissions,
loaded without pickle by ``load_checkpoint``, and refused with a one-line reason naming the file when broken."""

from __future__ import annotations

import json
import os
import pickle
import stat

import numpy as np
import pytest
import safetensors
import safetensors.numpy

from convgrad import train

CONFIG = train.TrainConfig(model="mlp", epochs=2, batch_size=32, lr=1e-3, seed=3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``(path, state, report)`` of a two-epoch mlp run with a checkpoint."""
    directory = tmp_path_factory.mktemp("run")
    state, report = train.train(CONFIG, train.synthetic_dataset(96, 32), checkpoint_dir=directory, progress=False)
    return directory / train.CHECKPOINT, state, report


def test_the_file_is_safetensors_with_the_names_of_the_state_as_keys(trained):
    path, state, report = trained
    tensors = safetensors.numpy.load_file(path)
    assert {name for name in tensors if name.startswith("params/")} == {
        f"params/dense{i}/{p}" for i in (0, 1) for p in ("w", "b")
    }
    np.testing.assert_array_equal(tensors["params/dense0/w"], np.asarray(state.params["dense0"]["w"]))
    np.testing.assert_array_equal(tensors["opt_state/0/mu/dense1/b"], np.asarray(state.opt_state[0].mu["dense1"]["b"]))
    assert tensors["opt_state/0/count"].dtype == np.int32 and int(tensors["opt_state/0/count"]) == 2 * 3
    with safetensors.safe_open(path, framework="numpy") as opened:
        metadata = opened.metadata()
    assert metadata["format"] == "convgrad.checkpoint" and metadata["format_version"] == "1"
    assert json.loads(metadata["config"]) == vars(CONFIG)
    assert json.loads(metadata["history"]) == report["history"]


def test_torch_reads_it(trained):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    path, state, _ = trained
    tensors = load_file(path)
    assert tensors["params/dense0/w"].dtype == torch.float32
    np.testing.assert_array_equal(tensors["params/dense0/w"].numpy(), np.asarray(state.params["dense0"]["w"]))


def test_load_checkpoint_returns_params_state_and_meta(trained):
    path, state, report = trained
    params, rest, meta = train.load_checkpoint(path)
    for name in ("dense0", "dense1"):
        for p in ("w", "b"):
            np.testing.assert_array_equal(params[name][p], np.asarray(state.params[name][p]))
    nu = rest["opt_state"]["0"]["nu"]  # optax's (ScaleByAdamState, ...) as nested dicts
    np.testing.assert_array_equal(nu["dense0"]["w"], np.asarray(state.opt_state[0].nu["dense0"]["w"]))
    assert rest["model_state"] == {}
    assert meta["config"] == vars(CONFIG) and meta["history"] == report["history"] and meta["epochs_done"] == 2
    assert meta["format"] == "convgrad.checkpoint" and meta["format_version"] == 1


def test_loading_never_unpickles(trained, monkeypatch):
    def refused(*args, **kwargs):
        raise AssertionError("unpickling")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refused)
    params, _, _ = train.load_checkpoint(trained[0])
    assert params["dense0"]["w"].shape == (784, 512)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_the_file_gets_the_permissions_of_any_new_file(tmp_path, umask):
    state = train.init_state(train.MODELS["linear"], CONFIG, train.make_optimizer(CONFIG, 3))
    previous = os.umask(umask)
    try:
        path = train.save_checkpoint(tmp_path, CONFIG, state, [])
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_a_resumed_state_must_match_the_model(tmp_path):
    """A checkpoint whose arrays are not those the model builds is refused, naming what differs."""
    config = train.TrainConfig(model="linear", epochs=2)
    state = train.init_state(train.MODELS["linear"], config, train.make_optimizer(config, 3))
    wrong = state._replace(params={"dense0": {**state.params["dense0"], "w": state.params["dense0"]["w"][:10]}})
    train.save_checkpoint(tmp_path, config, wrong, [])
    template = train.init_state(train.MODELS["linear"], config, train.make_optimizer(config, 3))
    with pytest.raises(train.CheckpointError, match=r"does not hold a linear training state \(params/dense0/w is "):
        train.resume_state(tmp_path, config, template)


def test_a_safetensors_file_of_another_program_is_not_a_checkpoint(tmp_path):
    path = tmp_path / train.CHECKPOINT
    safetensors.numpy.save_file({"weight": np.zeros(3, np.float32)}, path)
    with pytest.raises(train.CheckpointError, match="a safetensors file but not a convgrad checkpoint") as raised:
        train.load_checkpoint(path)
    assert raised.value.path == path


def test_a_newer_format_is_refused_by_name(tmp_path, monkeypatch):
    state = train.init_state(train.MODELS["linear"], CONFIG, train.make_optimizer(CONFIG, 3))
    monkeypatch.setattr(train, "CHECKPOINT_VERSION", 2)
    path = train.save_checkpoint(tmp_path, CONFIG, state, [])
    monkeypatch.setattr(train, "CHECKPOINT_VERSION", 1)
    with pytest.raises(train.CheckpointError, match="checkpoint format 2 by a newer convgrad; this one reads 1"):
        train.load_checkpoint(path)


def test_an_old_npz_checkpoint_is_named_in_the_error(tmp_path):
    np.savez(tmp_path / "checkpoint.npz", leaf0=np.zeros(3))
    with pytest.raises(train.CheckpointError, match=r"checkpoint\.npz there is in the NumPy format of earlier"):
        train.check_resumable(tmp_path, CONFIG)


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        train.load_checkpoint(tmp_path / "nothing.safetensors")


def test_two_leaves_of_one_name_are_refused(tmp_path):
    """``{"a/b": x}`` and ``{"a": {"b": y}}`` would both be ``a/b``: refused rather than one overwriting the other."""
    state = train.TrainState({"a/b": np.zeros(1), "a": {"b": np.ones(1)}}, (), {})
    with pytest.raises(ValueError, match="two leaves of the state are both named 'params/a/b'"):
        train.save_checkpoint(tmp_path, CONFIG, state, [])
    assert not (tmp_path / train.CHECKPOINT).exists()

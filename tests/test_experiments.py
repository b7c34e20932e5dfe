"""The experiments run in their ``--quick`` mode and the facts that hold at any scale hold there too.

Each script's ``main(["--quick", "--out", tmp])`` trains on tiny settings (real
MNIST when it is found without downloading, otherwise synthetic data) and must
write its JSON and figures. Accuracies at that scale prove nothing, so the tests
check only what is a mathematical fact: a network without nonlinearities is one
affine map; identical units stay identical; from all-zero weights only the output
biases move; convgrad's gradients equal jax.grad's; the transposed convolution is
conv's input gradient; the explicit DeConvNet projection is the VJP with
``relu(rule="deconvnet")``.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convgrad import autodiff, data, testing
from experiments import common, conv_gradients, deconvnet, layers, symmetry, transpose


def run_quick(module, tmp_path, *figures: str) -> dict:
    results = module.main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / f"{module.NAME}.json").is_file()
    for figure in figures:
        assert (tmp_path / f"{figure}.png").stat().st_size > 0
    return results


def test_quick_without_mnist_falls_back_to_synthetic_but_a_named_directory_must_hold_mnist(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    quick = argparse.Namespace(synthetic=False, quick=True, data_dir=None, seed=0)
    dataset, source = common.load_data(quick, quick_sizes=(8, 4))
    assert source == "synthetic" and dataset.train_x.shape == (8, 28, 28) and dataset.test_y.shape == (4,)
    with pytest.raises(data.MNISTNotFoundError):
        common.load_data(argparse.Namespace(synthetic=False, quick=True, data_dir=tmp_path, seed=0))


def test_layers_without_nonlinearity_is_one_linear_map(tmp_path):
    results = run_quick(layers, tmp_path, "layers_accuracy")
    collapsed = {name: r["collapse"] for name, r in results["networks"].items() if "collapse" in r}
    assert sorted(collapsed) == ["1 hidden, identity", "2 hidden, identity"]
    for check in collapsed.values():
        assert check["relative_error"] <= layers.COLLAPSE_RTOL
    assert all(len(r["history"]) == results["settings"]["epochs"] + 1 for r in results["networks"].values())


def test_symmetry_facts(tmp_path):
    results = run_quick(symmetry, tmp_path, "symmetry_curves", "symmetry_weights")
    cases = results["cases"]
    assert len(cases["symmetric"]["history"]) > 3
    # (a) identical units stay identical, incoming and outgoing, at every logged step: exactly in
    # exact arithmetic, in float32 up to rounding, since XLA:CPU need not round the rows of one
    # product alike (the 8-unit run's dW2 on the 2-core AMD machine: rows 2 ulps apart). Allowed:
    # 64 float32 ulps of the layer's norm, about 10^4 (9.7e3x) below the random start's spread.
    allowance = 64 * np.finfo(np.float32).eps
    for case in ("symmetric", "zero_sigmoid"):
        for record in cases[case]["history"]:
            assert record["unit_difference"] <= allowance * (record["norm_w1"] + record["norm_b1"]), record
            assert record["outgoing_unit_difference"] <= allowance * record["norm_w2"], record
    random_end = cases["random"]["history"][-1]
    assert random_end["unit_difference"] > 1e3 * allowance * random_end["norm_w1"]
    assert cases["symmetric"]["first_layer_rank"] == 1
    # (b) from all zeros only the output biases move.
    for record in cases["zero"]["history"]:
        assert record["change_w1"] == record["change_b1"] == record["change_w2"] == 0.0
    assert cases["zero"]["history"][-1]["change_b2"] > 0
    # ... while a sigmoid hidden layer (h = 1/2, not 0) lets W1 move, but identically for every unit.
    assert cases["zero_sigmoid"]["history"][-1]["change_w1"] > 0
    # (c) random units receive different updates.
    assert cases["random"]["history"][-1]["update_unit_difference"] > 0
    # (a) is a one-unit network with rescaled learning rates.
    assert results["symmetric_vs_one_unit"]["max_relative_logit_difference"] <= 1e-4


def test_conv_gradients_agree_with_jax_grad(tmp_path):
    results = run_quick(conv_gradients, tmp_path, "conv_gradients")
    example = conv_gradients.seed_example()
    x, w, b, g = (example[k] for k in ("x", "w", "b", "g"))
    expected = jax.grad(lambda x, w, b: jnp.sum(g * autodiff.conv(x, w, b)), argnums=(0, 1, 2))(x, w, b)
    for name, reference in zip(("input_grad", "weight_grad", "bias_grad"), expected):
        np.testing.assert_array_equal(results[name], reference)
        assert results["checks"][name]["equal"]
    # The hand arithmetic of docs/derivations.md.
    assert results["y"][0, 0, 0, 0] == 75.5
    assert results["bias_grad"].tolist() == [10.0]
    assert results["weight_grad"][0, 1, 0, 0] == 117.0
    assert results["input_grad"][0, 0, 1, 1] == 20.0


def test_transpose_is_the_input_gradient_of_conv(tmp_path):
    results = run_quick(transpose, tmp_path, "transpose")
    example = transpose.seed_example()
    _, pullback = jax.vjp(lambda x: autodiff.conv(x, example["w"], stride=2), example["x"])
    np.testing.assert_array_equal(results["y"], pullback(example["z"])[0])
    assert results["y"].shape == (1, 3, 7, 7) and results["z_padded"].shape == (1, 1, 9, 9)
    assert results["equal"]


def test_deconvnet_projection_is_the_vjp_with_the_deconvnet_rule(tmp_path):
    results = run_quick(deconvnet, tmp_path, "deconvnet_conv1", "deconvnet_conv2", "deconvnet_conv3")
    assert [layer["layer"] for layer in results["layers"]] == ["conv1", "conv2", "conv3"]
    for layer in results["layers"]:
        assert layer["explicit_vs_vjp_max_relative_error"] <= testing.TOLERANCES["float32"].rtol
        assert all(norm > 0 for norm in layer["projection_norms"].values())
    # Below a conv1 activation there is no other ReLU: the three rules give the same projection (the filter).
    assert all(d <= 1e-6 for d in results["layers"][0]["max_relative_difference_between_rules"].values())

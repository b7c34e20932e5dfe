"""Facts about softmax_cross_entropy and mse beyond the registry's checks, and an MLP built from the new ops."""

from __future__ import annotations

import dataclasses
import doctest
import math
import re
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convgrad
from convgrad import autodiff, loops
from convgrad.ops import losses
from convgrad.registry import OPS
from convgrad.verify import verify_case

# ---------------------------------------------------------------------------- softmax_cross_entropy

HUGE = [1e4, 0.0, -1e4]


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.float32, jnp.float64])
def test_cross_entropy_of_huge_logits_is_exact(dtype):
    """Logits [1e4, 0, -1e4] with labels 0, 1, 2: losses 1e4 - logit = 0, 1e4, 2e4 (plus log(1 + e^-1e4 + ...) = 0).

    softmax is exactly [1, 0, 0], so dlogits = p - onehot = [0, 0, 0], [1, -1, 0], [1, 0, -1]. float16 holds 1e4
    (and 2e4) exactly too.
    """
    logits = jnp.array([HUGE] * 3, dtype)
    labels = jnp.array([0, 1, 2])
    loss, vjp = jax.vjp(lambda z: convgrad.softmax_cross_entropy(z, labels), logits)
    np.testing.assert_array_equal(loss, [0.0, 1e4, 2e4])
    np.testing.assert_array_equal(loss, loops.softmax_cross_entropy(np.array([HUGE] * 3), np.array([0, 1, 2])))
    (dlogits,) = vjp(jnp.ones(3, dtype))
    np.testing.assert_array_equal(dlogits, [[0.0, 0.0, 0.0], [1.0, -1.0, 0.0], [1.0, 0.0, -1.0]])


def test_cross_entropy_by_hand():
    """Logits [0, log 3]: p = [1/4, 3/4]. Label 0 costs log 4, label 1 log(4/3); dlogits = g (p - onehot)."""
    logits = jnp.array([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
    labels = jnp.array([0, 1])
    loss, vjp = jax.vjp(lambda z: convgrad.softmax_cross_entropy(z, labels), logits)
    np.testing.assert_allclose(loss, [math.log(4.0), math.log(4.0 / 3.0)], rtol=1e-15)
    # g = [2, -1]: row 0 is 2 [1/4 - 1, 3/4] = [-3/2, 3/2]; row 1 is -1 [1/4, 3/4 - 1] = [-1/4, 1/4]
    (dlogits,) = vjp(jnp.array([2.0, -1.0]))
    np.testing.assert_allclose(dlogits, [[-1.5, 1.5], [-0.25, 0.25]], rtol=1e-15)


def test_cross_entropy_hessian_is_diag_p_minus_p_p_transpose():
    """Grad of the hand-derived VJP: for p = [1/4, 3/4] the Hessian diag(p) - p p^T is [[3, -3], [-3, 3]] / 16."""
    loss = lambda z: convgrad.softmax_cross_entropy(z, jnp.array(1))
    hessian = jax.jit(jax.jacrev(jax.grad(loss)))(jnp.array([0.0, math.log(3.0)]))
    np.testing.assert_allclose(hessian, np.array([[3.0, -3.0], [-3.0, 3.0]]) / 16, rtol=1e-14)


def test_cross_entropy_second_order_through_a_batch_mean():
    """Reverse over reverse through mean(CE(dense(x))): matches autodiff, for the weights and the input."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((4, 3)), rng.standard_normal((3, 5))
    labels, v = jnp.array([0, 4, 2, 2]), rng.standard_normal((3, 5))

    def hvp(dense, cross_entropy):
        loss = lambda x, w: jnp.mean(cross_entropy(dense(x, w), labels))
        return jax.grad(lambda x, w: jnp.vdot(jax.grad(loss, argnums=1)(x, w), v), argnums=(0, 1))(x, w)

    got = jax.jit(lambda: hvp(convgrad.dense, convgrad.softmax_cross_entropy))()
    for g, e in zip(got, hvp(autodiff.dense, autodiff.softmax_cross_entropy)):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)


def test_labels_get_a_float0_cotangent():
    _, vjp = jax.vjp(convgrad.softmax_cross_entropy, jnp.zeros((2, 3)), jnp.array([0, 2]))
    _, dlabels = vjp(jnp.ones(2))
    assert dlabels.dtype == jax.dtypes.float0 and dlabels.shape == (2,)


def test_out_of_range_labels_give_nan_rows_and_leave_the_others_alone():
    """Labels 3 and -1 with K = 3 cannot be rejected under jit: their losses and gradient rows are NaN."""
    logits = jnp.array([[0.0, math.log(3.0), 0.0]] * 3)
    f = jax.jit(lambda z: convgrad.softmax_cross_entropy(z, jnp.array([1, 3, -1])))
    loss, vjp = jax.vjp(f, logits)
    assert np.isnan(loss[1:]).all()
    np.testing.assert_allclose(loss[0], math.log(5.0 / 3.0), rtol=1e-15)  # p = [1, 3, 1] / 5
    (dlogits,) = vjp(jnp.ones(3))
    assert np.isnan(dlogits[1:]).all()
    np.testing.assert_allclose(dlogits[0], [0.2, 0.6 - 1.0, 0.2], rtol=1e-14)


def test_out_of_range_labels_poison_the_reductions_and_the_weight_gradient():
    """A NaN loss is in every sum that includes it; the weights' gradient, which all examples feed, is NaN too."""
    logits = jnp.zeros((3, 3))
    labels = jnp.array([1, 3, 0])
    assert np.isnan(convgrad.softmax_cross_entropy(logits, labels, reduction="mean"))
    assert np.isnan(convgrad.softmax_cross_entropy(logits, labels, reduction="sum"))
    dweight = jax.grad(lambda w: convgrad.softmax_cross_entropy(logits, labels, weight=w, reduction="sum"))(jnp.ones(3))
    assert np.isnan(dweight).all()
    # an ignored label, even out of range, is not out of range: it contributes nothing
    loss = convgrad.softmax_cross_entropy(logits, labels, ignore_index=3, reduction="mean")
    np.testing.assert_allclose(loss, math.log(3.0), rtol=1e-15)


P = [0.25, 0.75]  # softmax([0, log 3])
LOGITS = [[0.0, math.log(3.0)], [0.0, math.log(3.0)]]


def test_weighted_mean_by_hand():
    """PyTorch's weighted mean: sum_n w[t_n] loss_n / sum_n w[t_n]; the weights' gradient includes the divisor's."""
    logits, labels, w = jnp.array(LOGITS), jnp.array([0, 1]), jnp.array([1.0, 3.0])
    f = lambda z, w: convgrad.softmax_cross_entropy(z, labels, weight=w, reduction="mean")
    loss, (dlogits, dweight) = jax.value_and_grad(f, argnums=(0, 1))(logits, w)
    nll = np.array([math.log(4.0), math.log(4.0 / 3.0)])
    mean = (1 * nll[0] + 3 * nll[1]) / (1 + 3)
    np.testing.assert_allclose(loss, mean, rtol=1e-15)
    # dlogits row n = w[t_n] / D (p - onehot): [1/4 (p - e0), 3/4 (p - e1)]
    np.testing.assert_allclose(
        dlogits, [[0.25 * (P[0] - 1), 0.25 * P[1]], [0.75 * P[0], 0.75 * (P[1] - 1)]], rtol=1e-14
    )
    # dmean/dw[c] = (sum_{n: t_n = c} nll_n - mean [count of class c]) / D
    np.testing.assert_allclose(dweight, [(nll[0] - mean) / 4, (nll[1] - mean) / 4], rtol=1e-14)


def test_ignored_labels_drop_out_of_the_loss_the_mean_and_the_gradient():
    logits, labels = jnp.array(LOGITS), jnp.array([0, 1])
    losses_, vjp = jax.vjp(lambda z: convgrad.softmax_cross_entropy(z, labels, ignore_index=0), logits)
    np.testing.assert_allclose(losses_, [0.0, math.log(4.0 / 3.0)], rtol=1e-15)
    np.testing.assert_array_equal(vjp(jnp.ones(2))[0][0], [0.0, 0.0])
    mean = convgrad.softmax_cross_entropy(logits, labels, ignore_index=0, reduction="mean")
    np.testing.assert_allclose(mean, math.log(4.0 / 3.0), rtol=1e-15)  # over the one kept example
    assert np.isnan(
        convgrad.softmax_cross_entropy(logits, labels, ignore_index=0, weight=jnp.array([1.0, 0.0]), reduction="mean")
    )  # nothing to average over: 0 / 0
    # every label ignored: the mean is 0 / 0, NaN, and its gradient 0 (PyTorch's), not inf * 0
    mean, dlogits = jax.value_and_grad(
        lambda z: convgrad.softmax_cross_entropy(z, jnp.array([0, 0]), ignore_index=0, reduction="mean")
    )(logits)
    assert np.isnan(mean)
    np.testing.assert_array_equal(dlogits, np.zeros((2, 2)))


def test_label_smoothing_by_hand():
    """e = 0.2 over C = 2: the target is 0.9 on the label, 0.1 elsewhere; with weights each class's term is weighted."""
    logits, labels, w = jnp.array(LOGITS[:1]), jnp.array([0]), jnp.array([1.0, 3.0])
    log_p = np.log(P)
    loss = convgrad.softmax_cross_entropy(logits, labels, label_smoothing=0.2)
    np.testing.assert_allclose(loss, [-(0.9 * log_p[0] + 0.1 * log_p[1])], rtol=1e-15)
    loss = convgrad.softmax_cross_entropy(logits, labels, label_smoothing=0.2, weight=w)
    # (1 - e) w[t] (-log p[t]) + (e / C) sum_c w[c] (-log p[c])
    np.testing.assert_allclose(loss, [-(0.8 * log_p[0] + 0.1 * (log_p[0] + 3 * log_p[1]))], rtol=1e-15)
    dlogits = jax.grad(lambda z: convgrad.softmax_cross_entropy(z, labels, label_smoothing=0.2, weight=w).sum())(logits)
    u = np.array([0.8 + 0.1, 0.1 * 3])  # the target weights: dlogits = p sum(u) - u
    np.testing.assert_allclose(dlogits[0], np.array(P) * u.sum() - u, rtol=1e-14)


def test_probability_targets_by_hand():
    """Targets [0.5, 0.5]: loss -sum t log p; dlogits = p - t; dtargets = -log p; the mean divides by the count."""
    logits, targets = jnp.array(LOGITS), jnp.array([[0.5, 0.5], [1.0, 0.0]])
    f = lambda z, t: convgrad.softmax_cross_entropy(z, t, reduction="mean")
    loss, (dlogits, dtargets) = jax.value_and_grad(f, argnums=(0, 1))(logits, targets)
    log_p = np.log(P)
    np.testing.assert_allclose(loss, (-(0.5 * log_p[0] + 0.5 * log_p[1]) - log_p[0]) / 2, rtol=1e-15)
    np.testing.assert_allclose(dlogits, (np.array([P, P]) - np.array(targets)) / 2, rtol=1e-14)
    np.testing.assert_allclose(dtargets, -np.array([log_p, log_p]) / 2, rtol=1e-14)
    # class-index labels are the one-hot probabilities
    np.testing.assert_allclose(
        convgrad.softmax_cross_entropy(logits, jnp.array([[1.0, 0.0], [0.0, 1.0]])),
        convgrad.softmax_cross_entropy(logits, jnp.array([0, 1])),
        rtol=1e-15,
    )


def test_the_class_axis():
    """(N, C, d1) with axis=1 is (N, d1, C) with the default axis; the gradient comes back along axis 1."""
    rng = np.random.default_rng(0)
    logits, labels = jnp.asarray(rng.standard_normal((2, 4, 3))), jnp.asarray(rng.integers(0, 4, (2, 3)))
    f = lambda z: convgrad.softmax_cross_entropy(z, labels, axis=1, reduction="sum")
    g = lambda z: convgrad.softmax_cross_entropy(jnp.moveaxis(z, 1, -1), labels, reduction="sum")
    np.testing.assert_allclose(f(logits), g(logits), rtol=1e-14)
    np.testing.assert_allclose(jax.grad(f)(logits), jax.grad(g)(logits), rtol=1e-14)


@pytest.mark.parametrize(("dtype", "classes"), [(np.uint8, 300), (np.int8, 200), (np.uint16, 70000)])
def test_labels_of_narrow_dtypes_index_any_number_of_classes(dtype, classes):
    """uint8 [40, 10] over 300 classes gave a wrong loss (the class range wrapped in uint8), int8 over 200 NaN."""
    logits = jnp.asarray(np.random.default_rng(0).standard_normal((2, classes)))
    narrow, wide = jnp.array([40, 10], dtype), jnp.array([40, 10], jnp.int32)
    for reduction in ("none", "mean"):
        f = partial(convgrad.softmax_cross_entropy, reduction=reduction, weight=jnp.ones(classes))
        np.testing.assert_array_equal(f(logits, narrow), f(logits, wide))
        narrow_grad = jax.grad(lambda z, f=f: f(z, narrow).sum())(logits)
        np.testing.assert_array_equal(narrow_grad, jax.grad(lambda z, f=f: f(z, wide).sum())(logits))
    # an ignore_index the dtype cannot hold matches nothing; a label past the classes stays out of range
    assert not np.isnan(convgrad.softmax_cross_entropy(logits, narrow, ignore_index=-100)).any()


def test_zero_size_cross_entropy():
    """No examples: empty losses, a sum of 0 and PyTorch's NaN mean; no classes: class indices out of range, NaN."""
    empty = jnp.zeros((0, 5))
    labels = jnp.zeros(0, jnp.int32)
    assert convgrad.softmax_cross_entropy(empty, labels).shape == (0,)
    assert convgrad.softmax_cross_entropy(empty, labels, reduction="sum") == 0
    assert np.isnan(convgrad.softmax_cross_entropy(empty, labels, reduction="mean"))
    assert jax.grad(lambda z: convgrad.softmax_cross_entropy(z, labels, reduction="sum"))(empty).shape == (0, 5)
    no_classes = jnp.zeros((2, 0))
    assert np.isnan(convgrad.softmax_cross_entropy(no_classes, jnp.zeros(2, jnp.int32))).all()
    np.testing.assert_array_equal(convgrad.softmax_cross_entropy(no_classes, jnp.zeros((2, 0))), [0.0, 0.0])


@pytest.mark.parametrize("op", [convgrad.softmax_cross_entropy, convgrad.mse], ids=lambda op: op.__name__)
def test_docstring_ends_with_raises_examples_references_and_its_examples_run(op):
    doc = op.__doc__
    sections = [doc.index(f"\n    {name}:\n") for name in ("Args", "Returns", "Raises", "Examples", "References")]
    assert sections == sorted(sections)
    with jax.enable_x64(False):
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        for test in doctest.DocTestFinder().find(op, op.__name__, globs={}):
            runner.run(test)
    assert runner.tries >= 2 and runner.failures == 0


def _without_g(scale, probs, u, config, targets):
    """Bug: the per-example cotangent is dropped."""
    return probs * jnp.sum(u, axis=-1, keepdims=True) - u


def _plus_target(scale, probs, u, config, targets):
    """Bug: softmax plus the target instead of minus."""
    return scale[..., None] * (probs * jnp.sum(u, axis=-1, keepdims=True) + u)


def _mean_over_examples(config, losses, targets, weight):
    """Bug: the weighted mean divides by the number of examples, not by the kept labels' summed weights."""
    if config.reduction != "mean":
        return _REDUCE_LOSSES(config, losses, targets, weight)
    divisor = jnp.asarray(losses.size, losses.dtype)
    return jnp.sum(losses) / divisor, divisor


def _weight_grad_without_the_divisor_term(config, scale, log_probs, targets, divisor, loss):
    """Bug: the weights' gradient forgets that the mean's divisor D = sum w[t] depends on them."""
    return _CLASS_WEIGHTS_GRAD(dataclasses.replace(config, reduction="sum"), scale, log_probs, targets, divisor, loss)


_REDUCE_LOSSES, _CLASS_WEIGHTS_GRAD = losses.reduce_losses, losses.class_weights_grad  # unmutated


def _case(name, **wanted) -> int:
    return next(i for i, c in enumerate(OPS[name].cases) if all(c.options.get(k) == v for k, v in wanted.items()))


def _one_hot_without_g(g, probs, labels):
    """Bug (the one-hot case): the per-example cotangent is dropped."""
    return probs - losses.label_mask(labels, probs.shape[-1])


def _one_hot_plus_target(g, probs, labels):
    """Bug (the one-hot case): softmax plus the one-hot instead of minus."""
    return g[..., None] * (probs + losses.label_mask(labels, probs.shape[-1]))


WEIGHTED_MEAN = {"reduction": "mean", "ignore_index": 2}


@pytest.mark.parametrize(
    ("target", "bug", "wanted", "argument"),
    [
        ("one_hot_logits_grad", _one_hot_without_g, {}, "argument 0 (logits)"),
        ("one_hot_logits_grad", _one_hot_plus_target, {}, "argument 0 (logits)"),
        ("cross_entropy_logits_grad", _without_g, WEIGHTED_MEAN, "argument 0 (logits)"),
        ("cross_entropy_logits_grad", _plus_target, WEIGHTED_MEAN, "argument 0 (logits)"),
        ("reduce_losses", _mean_over_examples, WEIGHTED_MEAN, ""),
        ("class_weights_grad", _weight_grad_without_the_divisor_term, WEIGHTED_MEAN, "argument 2 (weight)"),
    ],
    ids=[
        "missing g",
        "softmax plus onehot",
        "missing G",
        "softmax plus target",
        "mean over examples",
        "no divisor term in dweight",
    ],
)
def test_checks_catch_wrong_cross_entropy_vjps(mutate, target, bug, wanted, argument):
    mutate(losses, target, bug)
    spec = OPS["softmax_cross_entropy"]
    result = verify_case(spec, spec.cases[_case("softmax_cross_entropy", **wanted)], "float64", transforms=False)
    assert not result.passed
    assert argument in result.failure


# ---------------------------------------------------------------------------- mse


def test_mse_by_hand():
    """The mean over all 4 elements: diff = [[1, 0], [-2, 0]], loss (1 + 4) / 4; dy = g 2 diff / 4, dtarget = -dy."""
    y, target = jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.array([[0.0, 2.0], [5.0, 4.0]])
    loss, vjp = jax.vjp(convgrad.mse, y, target)
    assert loss.shape == () and loss == 1.25
    dy, dtarget = vjp(jnp.array(3.0))
    np.testing.assert_array_equal(dy, [[1.5, 0.0], [-3.0, 0.0]])
    np.testing.assert_array_equal(dtarget, [[-1.5, 0.0], [3.0, 0.0]])


def test_mse_reductions_by_hand():
    y, target = jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.array([[0.0, 2.0], [5.0, 4.0]])
    np.testing.assert_array_equal(convgrad.mse(y, target, reduction="none"), [[1.0, 0.0], [4.0, 0.0]])
    assert convgrad.mse(y, target, reduction="sum") == 5.0
    _, vjp = jax.vjp(lambda y: convgrad.mse(y, target, reduction="none"), y)
    np.testing.assert_array_equal(vjp(jnp.array([[1.0, 2.0], [3.0, 4.0]]))[0], [[2.0, 0.0], [-12.0, 0.0]])  # 2 g diff
    np.testing.assert_array_equal(jax.grad(lambda y: convgrad.mse(y, target, reduction="sum"))(y), [[2, 0], [-4, 0]])


def test_zero_size_mse():
    """No elements: the mean is NaN (as in PyTorch and NumPy), the sum 0; gradients are empty."""
    empty = jnp.zeros((0, 3))
    assert np.isnan(convgrad.mse(empty, empty))
    assert convgrad.mse(empty, empty, reduction="sum") == 0
    assert convgrad.mse(empty, empty, reduction="none").shape == (0, 3)
    assert jax.grad(convgrad.mse)(empty, empty).shape == (0, 3)


# ---------------------------------------------------------------------------- an MLP of the new ops


def _mlp(dense, activation, params, x):
    w1, b1, w2, b2 = params
    return dense(activation(dense(x, w1, b1)), w2, b2)


MLPS = {
    "relu, cross-entropy": (
        lambda p, x, t: jnp.mean(convgrad.softmax_cross_entropy(_mlp(convgrad.dense, convgrad.relu, p, x), t)),
        lambda p, x, t: jnp.mean(autodiff.softmax_cross_entropy(_mlp(autodiff.dense, autodiff.relu, p, x), t)),
    ),
    "tanh, mse": (
        lambda p, x, t: convgrad.mse(_mlp(convgrad.dense, convgrad.tanh, p, x), t),
        lambda p, x, t: autodiff.mse(_mlp(autodiff.dense, autodiff.tanh, p, x), t),
    ),
}


@pytest.mark.parametrize("name", list(MLPS))
def test_mlp_gradients_match_autodiff_under_jit_and_checkpoint(name):
    rng = np.random.default_rng(1)
    params = [rng.standard_normal(s) for s in ((6, 8), (8,), (8, 4), (4,))]
    x = rng.standard_normal((5, 6))
    target = jnp.array([0, 3, 1, 1, 2]) if "cross" in name else rng.standard_normal((5, 4))
    loss, reference_loss = MLPS[name]
    want = jax.grad(reference_loss)(params, x, target)
    for transformed in (jax.jit(jax.grad(loss)), jax.grad(jax.checkpoint(loss))):
        for g, e in zip(transformed(params, x, target), want):
            np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------- errors

LOGITS32 = np.zeros((4, 3), np.float32)
LABELS = np.zeros(4, np.int32)
CE = "softmax_cross_entropy"
BAD_INPUTS = [
    (
        CE,
        (LOGITS32, LABELS.astype(bool)),
        {},
        TypeError,
        r"labels must have an integer dtype \(class indices, or float",
    ),
    (CE, (LOGITS32, LABELS.astype(np.float32)), {}, ValueError, r"probability targets must have the shape of logits"),
    (CE, (LOGITS32, LOGITS32.astype(np.float64)), {}, TypeError, "must share one dtype, got logits.dtype=float32, "),
    (
        CE,
        (LOGITS32, np.zeros(3, np.int32)),
        {},
        ValueError,
        r"labels.shape=\(3,\) must equal logits.shape without axis 1, \(4,\)",
    ),
    (CE, (LOGITS32, np.zeros((4, 3), np.int32)), {}, ValueError, r"labels.shape=\(4, 3\) must equal"),
    (CE, (LOGITS32.astype(np.int32), LABELS), {}, TypeError, "logits must have a real floating dtype"),
    (CE, (np.float32(0.0), LABELS[0]), {}, ValueError, r"logits must be at least 1-d \(\.\.\., C, \.\.\.\)"),
    (CE, (LOGITS32, "cat"), {}, TypeError, "labels must be an array, got str"),
    (CE, (LOGITS32, LABELS), {"axis": 2}, ValueError, r"axis=2 is out of range for logits.ndim=2"),
    (
        CE,
        (LOGITS32, LABELS),
        {"weight": np.ones(4, np.float32)},
        ValueError,
        r"weight must have shape \(C,\)=\(3,\), .* got weight.shape=\(4,\)",
    ),
    (
        CE,
        (LOGITS32, LABELS),
        {"weight": np.ones(3)},
        TypeError,
        "must share one dtype, got logits.dtype=float32, weight.dtype=float64",
    ),
    (CE, (LOGITS32, LABELS), {"weight": np.ones(3, np.int32)}, TypeError, "weight must have a real floating dtype"),
    (
        CE,
        (LOGITS32, LABELS),
        {"label_smoothing": -0.1},
        ValueError,
        r"label_smoothing must be in \[0, 1\], got label_smoothing=-0.1",
    ),
    (
        CE,
        (LOGITS32, LABELS),
        {"label_smoothing": 1.5},
        ValueError,
        r"label_smoothing must be in \[0, 1\], got label_smoothing=1.5",
    ),
    (
        CE,
        (LOGITS32, LABELS),
        {"label_smoothing": "0.1"},
        TypeError,
        "label_smoothing must be a real number, got label_smoothing='0.1'",
    ),
    (
        CE,
        (LOGITS32, LABELS),
        {"label_smoothing": True},
        TypeError,
        "label_smoothing must be a real number, got label_smoothing=True",
    ),
    (
        CE,
        (LOGITS32, LABELS),
        {"reduction": "avg"},
        ValueError,
        "reduction must be one of 'none', 'mean', 'sum', got reduction='avg'",
    ),
    (CE, (LOGITS32, LABELS), {"reduction": None}, ValueError, "reduction must be one of .* got reduction=None"),
    (
        CE,
        (LOGITS32, LABELS),
        {"ignore_index": 1.0},
        TypeError,
        "ignore_index must be an int or None, got ignore_index=1.0",
    ),
    (
        CE,
        (LOGITS32, LABELS),
        {"ignore_index": True},
        TypeError,
        "ignore_index must be an int or None, got ignore_index=True",
    ),
    (CE, (LOGITS32, LOGITS32), {"ignore_index": 0}, ValueError, "ignore_index=0 applies to class-index labels only"),
    (
        "mse",
        (LOGITS32, LOGITS32[None]),
        {},
        ValueError,
        r"y.shape=\(4, 3\) and target.shape=\(1, 4, 3\) must match exactly",
    ),
    ("mse", (LOGITS32, LOGITS32[:, :1]), {}, ValueError, r"no broadcasting"),
    (
        "mse",
        (LOGITS32, LOGITS32.astype(np.float64)),
        {},
        TypeError,
        "must share one dtype, got y.dtype=float32, target.dtype=float64",
    ),
    (
        "mse",
        (LOGITS32, LOGITS32.astype(np.int32)),
        {},
        TypeError,
        "target must have a real floating dtype .* target.dtype=int32",
    ),
    ("mse", (LOGITS32, LOGITS32), {"reduction": "mean "}, ValueError, "reduction must be one of 'none', 'mean', 'sum'"),
]


@pytest.mark.parametrize(
    ("op", "args", "kwargs", "error", "message"), BAD_INPUTS, ids=[f"{o}-{m[:30]}" for o, *_, m in BAD_INPUTS]
)
def test_bad_input_raises_a_clear_error(op, args, kwargs, error, message):
    """Each raises before XLA sees anything, naming the argument and its value; under jit too."""
    with pytest.raises(error, match=rf"^{op}: .*" + message):
        getattr(convgrad, op)(*args, **kwargs)
    if all(isinstance(a, np.ndarray) for a in args):
        with pytest.raises(error, match=re.escape(f"{op}: ")):
            jax.jit(lambda *a: getattr(convgrad, op)(*a, **kwargs))(*args)

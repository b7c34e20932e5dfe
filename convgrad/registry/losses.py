"""Registry specs of the losses: ``softmax_cross_entropy`` (class indices, and probability targets) and ``mse``.

The class weights are an array, so the specs take them as a third positional argument
(``None`` when a case has none) and pass them on as ``weight=``; integer labels are not
differentiable, probability targets are, hence two specs of the one cross-entropy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import convgrad
from convgrad import autodiff, loops
from convgrad.registry.activations import saturated_logits
from convgrad.registry.spec import Case, Draw, case, op_spec

# ---------------------------------------------------------------------------- softmax_cross_entropy


def softmax_cross_entropy(logits, labels, weight=None, **options):
    """``convgrad.softmax_cross_entropy`` with the class weights positional, for the checks to differentiate."""
    return convgrad.softmax_cross_entropy(logits, labels, weight=weight, **options)


def softmax_cross_entropy_twin(logits, labels, weight=None, **options):
    """The autodiff twin, with the class weights positional."""
    return autodiff.softmax_cross_entropy(logits, labels, weight=weight, **options)


LABEL_DTYPES = {"normal": np.int32, "saturated": np.int32, "uint8": np.uint8, "int8": np.int8}


def labelled_logits(rng: np.random.Generator, case: Case, dtype: Any) -> tuple[Any, ...]:
    """Logits (standard normal, or saturated), class indices in ``[0, C)`` and weights in ``[0.5, 2]``.

    ``values`` names the labels' dtype too (``"uint8"``: uint8 labels, ``"int8"``: int8, below 128 however many
    classes there are);
    with an ``ignore_index``, about a quarter of the labels get it, never all of them.
    """
    logits_shape, labels_shape, weight_shape = case.shapes
    axis = case.options.get("axis", -1)
    if case.values == "saturated":
        logits = saturated_logits(rng, logits_shape, axis)
    else:
        logits = rng.standard_normal(logits_shape)
    classes = logits_shape[axis]
    dtype_of_labels = LABEL_DTYPES[case.values]
    labels = rng.integers(
        0, min(classes, np.iinfo(dtype_of_labels).max + 1), labels_shape
    )  # the labels' dtype holds them
    ignore_index = case.options.get("ignore_index")
    if ignore_index is not None and labels.size:
        ignored = rng.random(labels_shape) < 0.25
        ignored.flat[0] = False
        labels = np.where(ignored, ignore_index, labels)
    weight = None if weight_shape is None else rng.uniform(0.5, 2.0, weight_shape).astype(dtype)
    labels = labels.astype(dtype_of_labels)
    return logits.astype(dtype), labels, weight


def cross_entropy_case(
    logits_shape: tuple[int, ...], values: str = "normal", *, weighted: bool = False, **options
) -> Case:
    """A cross-entropy case: logits with the classes along ``axis``, labels without that axis, weights ``(C,)``."""
    axis = options.get("axis", -1) % len(logits_shape)
    labels_shape = logits_shape[:axis] + logits_shape[axis + 1 :]
    weight_shape = (logits_shape[axis],) if weighted else None
    return case(tuple(logits_shape), labels_shape, weight_shape, values=values, **options)


CROSS_ENTROPY_CASES = (
    cross_entropy_case((8, 10)),  # a batch of 8 examples, 10 classes
    cross_entropy_case((2, 3, 4)),  # two leading axes
    cross_entropy_case((5,)),  # one example, a 0-d label
    cross_entropy_case((4, 2)),  # two classes
    cross_entropy_case((3, 7), values="saturated"),
    cross_entropy_case((8, 10), reduction="mean"),
    cross_entropy_case((6, 5), reduction="sum", weighted=True),
    cross_entropy_case((6, 5), reduction="mean", weighted=True),  # PyTorch's weighted mean: over sum of w[t]
    cross_entropy_case((7, 4), reduction="mean", weighted=True, ignore_index=2),  # ignored examples drop out of D
    cross_entropy_case((7, 4), ignore_index=-100),  # PyTorch's default ignore_index, out of the class range
    cross_entropy_case((6, 5), label_smoothing=0.1),
    cross_entropy_case((6, 5), reduction="mean", weighted=True, label_smoothing=0.3, ignore_index=0),
    cross_entropy_case((2, 5, 3, 3), axis=1, reduction="mean", weighted=True),  # (N, C, d1, d2), classes on axis 1
    cross_entropy_case((2, 300), values="uint8"),  # uint8 labels over more classes than uint8 holds
    cross_entropy_case((3, 200), values="int8", reduction="mean"),  # int8 labels over more than 127 classes
    # zero-size (a mean over no examples is PyTorch's NaN: tests/test_losses.py and tests/test_zero_size.py)
    cross_entropy_case((0, 5)),  # an empty batch
    cross_entropy_case((0, 5), reduction="sum", weighted=True),
    cross_entropy_case((0, 5), reduction="sum", label_smoothing=0.2, ignore_index=0),
    cross_entropy_case((2, 5, 0), axis=1),  # no spatial samples: (N, C, d1), classes on axis 1
    cross_entropy_case((2, 5, 0), axis=1, reduction="sum", weighted=True),
    cross_entropy_case((0, 0)),  # no examples and no classes
)


def sample_cross_entropy(draw: Draw) -> Case:
    """Up to two leading axes of sizes 1 to 4, 1 to 6 classes on the last or the second axis; every option drawn."""
    shape = (*(draw.integer(1, 4) for _ in range(draw.integer(0, 2))), draw.integer(1, 6))
    options: dict[str, Any] = {}
    if len(shape) >= 2 and draw.choice([False, True]):
        shape = (shape[0], shape[-1], *shape[1:-1])
        options["axis"] = 1
    options["reduction"] = draw.choice(["none", "mean", "sum"])
    options["label_smoothing"] = draw.choice([0.0, 0.0, 0.2])
    ignore_index = draw.choice([None, None, 0, -100])
    if ignore_index is not None:
        options["ignore_index"] = ignore_index
    return cross_entropy_case(shape, weighted=draw.choice([False, True]), **options)


SOFTMAX_CROSS_ENTROPY = op_spec(
    softmax_cross_entropy,
    softmax_cross_entropy_twin,
    loops.softmax_cross_entropy,
    loops.softmax_cross_entropy_vjp,
    CROSS_ENTROPY_CASES,
    sample_cross_entropy,
    argnums=(0, 2),  # the labels are integers
    make_inputs=labelled_logits,
    name="softmax_cross_entropy",
)


def probability_targets(rng: np.random.Generator, case: Case, dtype: Any) -> tuple[Any, ...]:
    """Standard normal logits, targets ``softmax`` of standard normals (positive, sum 1), weights in ``[0.5, 2]``."""
    logits_shape, _, weight_shape = case.shapes
    axis = case.options.get("axis", -1)
    scores = rng.standard_normal(logits_shape)
    targets = np.exp(scores) / np.sum(np.exp(scores), axis=axis, keepdims=True) if scores.size else scores
    weight = None if weight_shape is None else rng.uniform(0.5, 2.0, weight_shape).astype(dtype)
    return rng.standard_normal(logits_shape).astype(dtype), targets.astype(dtype), weight


def probability_case(logits_shape: tuple[int, ...], *, weighted: bool = False, **options) -> Case:
    """A cross-entropy case with probability targets shaped like the logits."""
    axis = options.get("axis", -1) % len(logits_shape)
    weight_shape = (logits_shape[axis],) if weighted else None
    return case(tuple(logits_shape), tuple(logits_shape), weight_shape, **options)


PROBABILITY_CASES = (
    probability_case((6, 5)),
    probability_case((6, 5), reduction="mean", weighted=True),  # the mean over examples, whatever the weights
    probability_case((4, 3), reduction="sum", label_smoothing=0.2),
    probability_case((2, 4, 3), axis=1, reduction="mean", weighted=True, label_smoothing=0.1),
    probability_case((7,), weighted=True),  # one example
    # zero-size (a mean over no examples is PyTorch's NaN: tests/test_zero_size.py)
    probability_case((0, 4), reduction="sum", weighted=True),  # an empty batch
    probability_case((0, 4)),  # an empty batch, losses unreduced
    probability_case((3, 0)),  # no classes: every loss an empty sum
    probability_case((2, 0, 3), axis=1, reduction="sum", weighted=True, label_smoothing=0.1),  # no classes, axis 1
    probability_case((2, 3, 0), axis=1, reduction="sum"),  # no spatial samples
)


def sample_probabilities(draw: Draw) -> Case:
    """Up to two leading axes, 1 to 6 classes on the last or the second axis, any reduction, smoothing, weights."""
    shape = (*(draw.integer(1, 4) for _ in range(draw.integer(0, 2))), draw.integer(1, 6))
    options: dict[str, Any] = {"reduction": draw.choice(["none", "mean", "sum"])}
    if len(shape) >= 2 and draw.choice([False, True]):
        shape = (shape[0], shape[-1], *shape[1:-1])
        options["axis"] = 1
    options["label_smoothing"] = draw.choice([0.0, 0.2])
    return probability_case(shape, weighted=draw.choice([False, True]), **options)


SOFTMAX_CROSS_ENTROPY_PROBABILITIES = op_spec(
    softmax_cross_entropy,
    softmax_cross_entropy_twin,
    loops.softmax_cross_entropy,
    loops.softmax_cross_entropy_vjp,
    PROBABILITY_CASES,
    sample_probabilities,
    argnums=(0, 1, 2),
    linear_argnums=(1, 2),  # the loss is affine in the targets, and linear in the weights
    make_inputs=probability_targets,
    name="softmax_cross_entropy_probabilities",
)

# ---------------------------------------------------------------------------- mse

MSE_CASES = (
    case((4, 5), (4, 5)),
    case((2, 3, 4), (2, 3, 4)),
    case((6,), (6,)),
    case((), ()),
    case((4, 5), (4, 5), reduction="sum"),
    case((2, 3), (2, 3), reduction="none"),
    # zero-size (the mean of no elements is NaN, as in PyTorch: tests/test_losses.py)
    case((0, 3), (0, 3), reduction="sum"),  # no elements: a sum of none, 0
    case((0, 3), (0, 3), reduction="none"),
    case((0,), (0,), reduction="sum"),  # an empty vector
    case((2, 0, 3), (2, 0, 3), reduction="none"),  # an empty middle axis
)


def sample_mse(draw: Draw) -> Case:
    """Any shape of rank 0 to 3, sizes 1 to 4, for both arguments; any reduction."""
    shape = tuple(draw.integer(1, 4) for _ in range(draw.integer(0, 3)))
    return case(shape, shape, reduction=draw.choice(["mean", "sum", "none"]))


MSE = op_spec(convgrad.mse, autodiff.mse, loops.mse, loops.mse_vjp, MSE_CASES, sample_mse, argnums=(0, 1))

SPECS = (SOFTMAX_CROSS_ENTROPY, SOFTMAX_CROSS_ENTROPY_PROBABILITIES, MSE)

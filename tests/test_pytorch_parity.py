"""The pooling ops and losses against PyTorch on random configurations, in float64: values, switches, gradients.

Each test draws configurations from the op's registry sampler (the same generator the
property tests use), skips the few that PyTorch cannot express (asymmetric padding, a
padding PyTorch's 3-d kernels refuse), runs the op and PyTorch on the same float64 inputs
and a random cotangent, and compares. ``CONVGRAD_TORCH_CONFIGS`` sets how many
configurations each test draws (default 6). Skipped, saying so, without torch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convgrad
from convgrad.registry import OPS, RandomDraw

torch = pytest.importorskip("torch")
F = torch.nn.functional

CONFIGS = int(os.environ.get("CONVGRAD_TORCH_CONFIGS", "6"))
TOLERANCE = {"rtol": 1e-12, "atol": 1e-13}  # float64 on both sides: sums in another order, nothing else


def _draw(name: str, seed: int):
    """``CONFIGS`` cases of the op's sampler with their float64 inputs."""
    spec = OPS[name]
    rng = np.random.default_rng(seed)
    for _ in range(CONFIGS):
        case = spec.sample(RandomDraw(rng))
        yield case, [None if a is None else np.asarray(a) for a in spec.inputs(rng, case, np.float64)]


def _spatial(case) -> tuple[int, bool]:
    """``(n, batched)`` of a pooling case, by the ops' rule."""
    shape, options = case.shapes[0], case.options
    spatial_from = options.get("window", options.get("output_size"))
    n = len(spatial_from) if isinstance(spatial_from, Sequence) else len(shape) - 2
    return n, len(shape) == n + 2


def _to_torch(a: np.ndarray, case, batched: bool) -> np.ndarray:
    """A case's array as PyTorch's batched ``(N, C, *spatial)``."""
    a = a if batched else a[None]
    return a if case.options.get("channel_axis", 1) == 1 else np.moveaxis(a, -1, 1)


def _from_convgrad(a, case, batched: bool) -> np.ndarray:
    return _to_torch(np.asarray(a), case, batched)


def _symmetric(padding, n):
    """PyTorch's per-dim padding, or ``None`` when a ``(lo, hi)`` pair is asymmetric."""
    if isinstance(padding, int):
        return (padding,) * n
    pads = []
    for p in padding:
        lo, hi = p if isinstance(p, Sequence) else (p, p)
        if lo != hi:
            return None
        pads.append(lo)
    return tuple(pads)


def _vjp(f, *args, g):
    out, vjp = jax.vjp(f, *args)
    first = jax.tree.leaves(out)[0]
    cotangent = jax.tree.map(lambda o: np.zeros(o.shape, jax.dtypes.float0) if o.dtype == jnp.int32 else g, out)
    return out, first, vjp(cotangent)


def _compare_pool(name, op_name, torch_op, seed, dilated):
    compared = 0
    with jax.enable_x64(True):
        for case, (x,) in _draw(name, seed):
            n, batched = _spatial(case)
            options = dict(case.options)
            padding = _symmetric(options.get("padding", 0), n)
            if padding is None:
                continue
            window = options["window"]
            window = tuple(window) if isinstance(window, Sequence) else (window,) * n
            stride = options.get("stride") or window
            stride = tuple(stride) if isinstance(stride, Sequence) else (stride,) * n
            xt = torch.tensor(_to_torch(x, case, batched), requires_grad=True)
            kwargs = {"ceil_mode": options.get("ceil_mode", False)}
            if dilated:
                dilation = options.get("dilation", 1)
                kwargs.update(dilation=dilation, return_indices=True)
            else:
                kwargs["count_include_pad"] = options.get("count_include_pad", True)
                if options.get("divisor_override") is not None:
                    if n == 1:
                        continue  # avg_pool1d has no divisor_override
                    kwargs["divisor_override"] = options["divisor_override"]
            try:
                expected = torch_op[n](xt, window, stride, padding, **kwargs)
            except RuntimeError:
                continue  # e.g. max_pool3d's pad <= k / 2 (not the dilated k) rule
            expected_y, expected_switches = expected if dilated else (expected, None)
            g = np.random.default_rng(compared).standard_normal(expected_y.shape)
            expected_y.backward(torch.tensor(g))
            op = getattr(convgrad, op_name)
            g_convgrad = jnp.asarray(_from_torch_layout(g, case, batched))
            out, y, (dx,) = _vjp(partial(op, **options), jnp.asarray(x), g=g_convgrad)
            np.testing.assert_allclose(_from_convgrad(y, case, batched), expected_y.detach().numpy(), **TOLERANCE)
            np.testing.assert_allclose(_from_convgrad(dx, case, batched), xt.grad.numpy(), **TOLERANCE)
            if dilated:
                np.testing.assert_array_equal(_from_convgrad(out[1], case, batched), expected_switches.numpy())
            compared += 1
    print(f"{name}: compared with PyTorch on {compared} of {CONFIGS} drawn configurations")
    assert compared >= CONFIGS // 2, f"only {compared} of {CONFIGS} configurations were comparable"
    return compared


def _from_torch_layout(a: np.ndarray, case, batched: bool) -> np.ndarray:
    """Inverse of :func:`_to_torch`."""
    a = a if case.options.get("channel_axis", 1) == 1 else np.moveaxis(a, 1, -1)
    return a if batched else a[0]


@pytest.mark.parametrize("seed", [0])
def test_max_pool_matches_pytorch(seed):
    """Values, switches (PyTorch's flat indices) and input gradients of max_pool, dilation and ceil mode included."""
    _compare_pool("max_pool", "max_pool", {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}, seed, dilated=True)


@pytest.mark.parametrize("seed", [0])
def test_avg_pool_matches_pytorch(seed):
    """Values and input gradients of avg_pool: ceil mode, count_include_pad, divisor_override."""
    _compare_pool("avg_pool", "avg_pool", {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}, seed, dilated=False)


def test_max_unpool_matches_pytorch_where_switches_do_not_coincide():
    """PyTorch's MaxUnpool with distinct switches per plane (where they coincide convgrad adds, PyTorch keeps one)."""
    unpool = {1: F.max_unpool1d, 2: F.max_unpool2d, 3: F.max_unpool3d}
    compared = 0
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        for case, (y, _) in _draw("max_unpool", 0):
            n, batched = _spatial(case)
            output_size = case.options["output_size"]
            y_t = _to_torch(y, case, batched)
            count, plane = math.prod(y_t.shape[2:]), math.prod(output_size)
            if count > plane:
                continue
            switches_t = np.stack([rng.permutation(plane)[:count] for _ in range(y_t.shape[0] * y_t.shape[1])])
            switches_t = switches_t.reshape(y_t.shape)
            # a kernel, stride and padding whose default output size is output_size (PyTorch checks it)
            kernel, stride, padding = [], [], []
            for size, out in zip(y_t.shape[2:], output_size):
                s = 2 * out + 2
                k = out if size == 1 else 1 + ((size - 1) * s + 1 - out) % 2
                p = 0 if size == 1 else ((size - 1) * s + k - out) // 2
                kernel.append(k), stride.append(s), padding.append(p)
            yt = torch.tensor(y_t, requires_grad=True)
            expected = unpool[n](yt, torch.tensor(switches_t), kernel, stride, padding, output_size=output_size)
            g = rng.standard_normal(expected.shape)
            expected.backward(torch.tensor(g))
            switches = jnp.asarray(_from_torch_layout(switches_t, case, batched).astype(np.int32))
            options = dict(case.options)
            out, vjp = jax.vjp(partial(convgrad.max_unpool, switches=switches, **options), jnp.asarray(y))
            (dy,) = vjp(jnp.asarray(_from_torch_layout(g, case, batched)))
            np.testing.assert_array_equal(_from_convgrad(out, case, batched), expected.detach().numpy())
            np.testing.assert_array_equal(_from_convgrad(dy, case, batched), yt.grad.numpy())
            compared += 1
    print(f"max_unpool: compared with PyTorch on {compared} of {CONFIGS} drawn configurations")
    assert compared >= CONFIGS // 2


@pytest.mark.parametrize("name", ["adaptive_avg_pool", "adaptive_max_pool"])
def test_adaptive_pools_match_pytorch(name):
    """Values, switches and input gradients of the adaptive pools, ``None`` sizes and overlapping windows included."""
    torch_ops = {
        "adaptive_avg_pool": {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d},
        "adaptive_max_pool": {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d},
    }[name]
    compared = 0
    with jax.enable_x64(True):
        for case, (x,) in _draw(name, 1):
            n, batched = _spatial(case)
            options = dict(case.options)
            xt = torch.tensor(_to_torch(x, case, batched), requires_grad=True)
            output_size = options["output_size"]
            sizes = tuple(output_size) if isinstance(output_size, Sequence) else (output_size,) * n
            sizes = tuple(xt.shape[2 + d] if s is None else s for d, s in enumerate(sizes))
            extra = {"return_indices": True} if name == "adaptive_max_pool" else {}
            expected = torch_ops[n](xt, sizes[0] if n == 1 else sizes, **extra)
            expected_y, expected_switches = expected if extra else (expected, None)
            g = np.random.default_rng(compared).standard_normal(expected_y.shape)
            expected_y.backward(torch.tensor(g))
            op = getattr(convgrad, name)
            out, y, (dx,) = _vjp(
                partial(op, **options), jnp.asarray(x), g=jnp.asarray(_from_torch_layout(g, case, batched))
            )
            np.testing.assert_allclose(_from_convgrad(y, case, batched), expected_y.detach().numpy(), **TOLERANCE)
            np.testing.assert_allclose(_from_convgrad(dx, case, batched), xt.grad.numpy(), **TOLERANCE)
            if extra:
                np.testing.assert_array_equal(_from_convgrad(out[1], case, batched), expected_switches.numpy())
            compared += 1
    assert compared == CONFIGS


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "softmax_cross_entropy_probabilities"])
def test_cross_entropy_matches_pytorch(name):
    """Loss and logit gradient (and the probability targets' gradient) of F.cross_entropy, every argument drawn.

    PyTorch does not differentiate the class weights; their gradient is checked by the registry.
    """
    compared = 0
    with jax.enable_x64(True):
        for case, (logits, labels, weight) in _draw(name, 2):
            options = dict(case.options)
            axis = options.pop("axis", -1) % logits.ndim
            to_torch = partial(np.moveaxis, source=axis, destination=1) if logits.ndim > 1 else np.asarray
            probabilities = np.issubdtype(labels.dtype, np.floating)
            logits_t = torch.tensor(to_torch(logits), requires_grad=True)
            if probabilities:
                labels_t = torch.tensor(to_torch(labels), requires_grad=True)
            else:  # removing the class axis leaves PyTorch's (N, d1, ...) order
                labels_t = torch.tensor(labels.astype(np.int64))
            ignore_index = options.get("ignore_index")
            expected = F.cross_entropy(
                logits_t,
                labels_t,
                weight=None if weight is None else torch.tensor(weight),
                ignore_index=-100 if ignore_index is None else ignore_index,
                reduction=options.get("reduction", "none"),
                label_smoothing=options.get("label_smoothing", 0.0),
            )
            g = np.asarray(np.random.default_rng(compared).standard_normal(expected.shape))
            expected.backward(torch.tensor(g))
            config = {"axis": axis, "weight": None if weight is None else jnp.asarray(weight), **options}
            if probabilities:
                loss, vjp = jax.vjp(
                    partial(convgrad.softmax_cross_entropy, **config), *map(jnp.asarray, (logits, labels))
                )
            else:
                f = partial(convgrad.softmax_cross_entropy, labels=jnp.asarray(labels), **config)
                loss, vjp = jax.vjp(f, jnp.asarray(logits))
            grads = vjp(jnp.asarray(g))  # the losses' shape is PyTorch's too
            np.testing.assert_allclose(loss, expected.detach().numpy(), **TOLERANCE)
            np.testing.assert_allclose(to_torch(np.asarray(grads[0])), logits_t.grad.numpy(), **TOLERANCE)
            if probabilities:
                np.testing.assert_allclose(to_torch(np.asarray(grads[1])), labels_t.grad.numpy(), **TOLERANCE)
            compared += 1
    assert compared == CONFIGS


def test_mse_matches_pytorch():
    compared = 0
    with jax.enable_x64(True):
        for case, (y, target) in _draw("mse", 3):
            reduction = case.options.get("reduction", "mean")
            yt, tt = torch.tensor(y, requires_grad=True), torch.tensor(target, requires_grad=True)
            expected = F.mse_loss(yt, tt, reduction=reduction)
            g = np.random.default_rng(compared).standard_normal(expected.shape)
            expected.backward(torch.tensor(g))
            loss, vjp = jax.vjp(partial(convgrad.mse, reduction=reduction), jnp.asarray(y), jnp.asarray(target))
            dy, dt = vjp(jnp.asarray(g))
            np.testing.assert_allclose(loss, expected.detach().numpy(), **TOLERANCE)
            np.testing.assert_allclose(dy, yt.grad.numpy(), **TOLERANCE)
            np.testing.assert_allclose(dt, tt.grad.numpy(), **TOLERANCE)
            compared += 1
    assert compared == CONFIGS


def test_labels_of_narrow_integer_dtypes_match_pytorch():
    """uint8 labels [40, 10] over 300 classes (a wrong loss before) and int8 [40, 10] over 200 (NaN before)."""
    rng = np.random.default_rng(0)
    for dtype, classes in ((np.uint8, 300), (np.int8, 200)):
        logits = rng.standard_normal((2, classes))
        labels = np.array([40, 10], dtype)
        logits_t = torch.tensor(logits, requires_grad=True)
        expected = F.cross_entropy(logits_t, torch.tensor(labels.astype(np.int64)), reduction="none")
        expected.sum().backward()
        with jax.enable_x64(True):
            loss, vjp = jax.vjp(
                partial(convgrad.softmax_cross_entropy, labels=jnp.asarray(labels)), jnp.asarray(logits)
            )
            (dlogits,) = vjp(jnp.ones(2))
        np.testing.assert_allclose(loss, expected.detach().numpy(), **TOLERANCE)
        np.testing.assert_allclose(dlogits, logits_t.grad.numpy(), **TOLERANCE)


@pytest.mark.parametrize(
    ("op", "torch_op", "shape", "kwargs"),
    [
        ("max_pool", F.max_pool2d, (0, 3, 7, 7), {"window": 3, "stride": 2, "padding": 1}),
        ("avg_pool", F.avg_pool2d, (0, 3, 7, 7), {"window": 3, "stride": 2, "padding": 1}),
        ("adaptive_avg_pool", F.adaptive_avg_pool2d, (0, 3, 7, 7), {"output_size": (3, 2)}),
        ("adaptive_avg_pool", F.adaptive_avg_pool2d, (2, 0, 7, 7), {"output_size": (3, 2)}),
    ],
    ids=["max_pool N=0", "avg_pool N=0", "adaptive N=0", "adaptive C=0"],
)
def test_zero_size_results_are_shaped_as_pytorchs(op, torch_op, shape, kwargs):
    x = np.zeros(shape)
    if "window" in kwargs:
        expected = torch_op(torch.tensor(x), kwargs["window"], kwargs["stride"], kwargs["padding"])
    else:
        expected = torch_op(torch.tensor(x), kwargs["output_size"])
    got = jax.tree.leaves(getattr(convgrad, op)(jnp.asarray(x), **kwargs))[0]
    assert got.shape == tuple(expected.shape)

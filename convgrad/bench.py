"""Side-by-side timings: convgrad's hand-derived VJPs vs ``jax.grad`` of plain lax (and PyTorch, when importable).

What ``convgrad bench`` runs. Every benchmark compares variants of the same
computation in one process: each is compiled and warmed up first, then round
after round every variant times a batch of back-to-back calls, in an order
shuffled each round (interleaved, so drifts in machine load hit all of them
alike), and the median time per call of each is reported with the ratio
``jax.grad / convgrad`` (> 1: convgrad is faster).

The shapes are fixed here, not tuned to the code: the MNIST convnet's layers
(batch 128, channels-last, and the first three also channel-first, the default
layout of the public ops) and its train step in both layouts (Adam, and SGD with
momentum), and ResNet-style 3x3 layers. ``convgrad step (NCHW) / convgrad step``
is the default layout's cost over channels-last's: the benchmark that guards it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import platform
import random
import re
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import convgrad
from convgrad import autodiff
from convgrad.models import KITS, loss_fn, make_cnn
from convgrad.ops.geometry import CHANNELS_LAST
from convgrad.progress import Progress
from convgrad.testing import jitted_vjp
from convgrad.train import TrainState, make_step


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One computation in several variants: ``make(dtype) -> {variant: (fn, args)}``; ``fn(*args)`` is timed."""

    name: str
    group: str  # "op" (forward / VJP of one op) or "step" (a whole train step)
    make: Callable[[str], dict[str, tuple[Callable[..., Any], tuple[Any, ...]]]]
    description: str
    # floating-point operations per call of each kind ("fwd", "vjp", "step") by direct count
    # (multiply and add, no fast algorithm's savings): for GFLOP/s; empty for memory-bound ops
    flops: dict[str, float] = dataclasses.field(default_factory=dict)


# The dtypes `convgrad bench --dtype` takes: the values are drawn in float64 and rounded to it.
DTYPES = ("float32", "bfloat16", "float16")


def _normal(key: int, shape: Sequence[int], scale: float = 1.0, dtype: Any = jnp.float32) -> jax.Array:
    return jnp.asarray(np.random.default_rng(key).standard_normal(shape) * scale, dtype)


def _vjp_program(fn: Callable[..., jax.Array], argnums: tuple[int, ...]) -> Callable[..., Any]:
    """``(args, g) -> (outputs, grads)`` by :func:`convgrad.testing.jitted_vjp`: forward and backward, as in a step.

    Wrapped in ``jax.jit`` (the program is the same) so that it can be lowered to
    compare the compiled programs of two variants.
    """
    return jax.jit(jitted_vjp(fn, argnums))


def _op_variants(custom, reference, args, argnums, torch_fn=None):
    """Forward and VJP (forward + backward) of convgrad's op and of its plain-lax twin, on the same arrays."""
    g = _normal(99, jax.eval_shape(custom, *args).shape, dtype=args[0].dtype)
    variants = {
        "convgrad fwd": (jax.jit(custom), args),
        "jax.grad fwd": (jax.jit(reference), args),
        "convgrad vjp": (_vjp_program(custom, argnums), (args, g)),
        "jax.grad vjp": (_vjp_program(reference, argnums), (args, g)),
    }
    if torch_fn is not None:
        variants.update(torch_fn(args, g))
    return variants


# ---------------------------------------------------------------------------- PyTorch twins (optional)


def _torch():
    # Idle OpenMP workers of PyTorch busy-wait by default; on a 2-core machine they
    # would steal the cores from whichever variant runs next. Passive waiting (set
    # before torch loads its OpenMP runtime) keeps the variants from disturbing each other.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except ImportError:
        return None
    return torch


def _torch_variants(torch_forward, args, g, channels_last_dims, contiguous=False):
    """PyTorch forward and forward+backward of the same computation on the same values.

    ``channels_last_dims`` permutes each channels-last argument (and ``g`` like the
    first) to PyTorch's channel-first shape; its memory stays channels-last, or with
    ``contiguous`` the arguments are already channel-first and stay contiguous.
    """
    torch = _torch()
    if torch is None:
        return {}

    def tensor(a, dims):
        t = _torch_tensor(torch, a)
        if dims is None or contiguous:
            return t
        return t.permute(*dims).contiguous(memory_format=torch.channels_last)

    tensors = [tensor(a, dims) for a, dims in zip(args, channels_last_dims)]
    grad = tensor(g, channels_last_dims[0])

    def forward(*ts):
        with torch.no_grad():
            return torch_forward(*ts)

    def forward_backward(*ts):
        leaves = [t.detach().requires_grad_(True) for t in ts]
        torch_forward(*leaves).backward(grad)
        return [t.grad for t in leaves]

    return {"pytorch fwd": (forward, tuple(tensors)), "pytorch vjp": (forward_backward, tuple(tensors))}


def _torch_tensor(torch, a):
    """``a`` as a PyTorch tensor of the same dtype (NumPy has no bfloat16 that PyTorch reads: via float32)."""
    dtype = jnp.dtype(a.dtype)
    if dtype == jnp.bfloat16:
        return torch.from_numpy(np.asarray(a, np.float32)).to(torch.bfloat16)
    return torch.from_numpy(np.array(a))


NHWC_TO_NCHW = (0, 3, 1, 2)
HWIO_TO_OIHW = (3, 2, 0, 1)


def _conv_benchmark(name, batch, size, c_in, c_out, stride=1, description="", layout="NHWC"):
    """A 3x3 conv layer; ``layout="NCHW"``: the public op's default arguments (and PyTorch's contiguous memory)."""

    def make(dtype):
        x = _normal(0, (batch, size, size, c_in), dtype=dtype)
        w = _normal(1, (3, 3, c_in, c_out), (2 / (9 * c_in)) ** 0.5, dtype)
        options = dict(stride=stride, padding="SAME" if stride == 1 else ((1, 1), (1, 1)))
        if layout == "NHWC":
            options["dimension_numbers"] = CHANNELS_LAST[2]
        else:  # the same values, channel-first
            x, w = x.transpose(NHWC_TO_NCHW), w.transpose(HWIO_TO_OIHW)
        custom = functools.partial(convgrad.conv, **options)
        reference = functools.partial(autodiff.conv, **options)

        def torch_fn(args, g):
            torch = _torch()
            if torch is None:
                return {}
            return _torch_variants(
                lambda x, w: torch.nn.functional.conv2d(x, w, stride=stride, padding=1),
                args,
                g,
                (NHWC_TO_NCHW, HWIO_TO_OIHW),
                contiguous=layout == "NCHW",
            )

        return _op_variants(custom, reference, (x, w), (0, 1), torch_fn)

    return Benchmark(name, "op", make, description, _product_flops(conv_flops(batch, size // stride, c_in, c_out, 3)))


def conv_flops(batch: int, out_size: int, c_in: int, c_out: int, kernel: int) -> float:
    """A square convolution's forward by direct count: ``2 N H_out W_out C_out C_in k^2`` (a multiply and an add each).

    Its input gradient and its weight gradient are products of the same count.
    """
    return 2.0 * batch * out_size**2 * c_out * c_in * kernel**2


def dense_flops(batch: int, n_in: int, n_out: int) -> float:
    """``x @ w`` by direct count: ``2 N n_in n_out`` (the bias's ``N n_out`` adds left out)."""
    return 2.0 * batch * n_in * n_out


def _product_flops(forward: float) -> dict[str, float]:
    """A linear layer's counts: the forward, and the VJP = forward + input gradient + weight gradient, 3x."""
    return {"fwd": forward, "vjp": 3 * forward}


def _pool_benchmark(name, batch, size, channels, window, stride, padding, description="", layout="NHWC"):
    """A max pool; ``layout="NCHW"``: the public op's default ``channel_axis`` (and PyTorch's contiguous memory)."""

    def make(dtype):
        x = _normal(0, (batch, size, size, channels), dtype=dtype)
        channel_axis = -1 if layout == "NHWC" else 1
        if layout == "NCHW":
            x = x.transpose(NHWC_TO_NCHW)
        custom = lambda x: convgrad.max_pool(x, window, stride, padding, channel_axis=channel_axis)[0]
        reference = lambda x: autodiff.max_pool(x, window, stride, padding, channel_axis=channel_axis)

        def torch_fn(args, g):
            torch = _torch()
            if torch is None:
                return {}
            return _torch_variants(
                lambda x: torch.nn.functional.max_pool2d(x, window, stride, padding),
                args,
                g,
                (NHWC_TO_NCHW,),
                contiguous=layout == "NCHW",
            )

        return _op_variants(custom, reference, (x,), (0,), torch_fn)

    return Benchmark(name, "op", make, description)


def _dense_benchmark(name, batch, n_in, n_out, description=""):
    def make(dtype):
        x, w, b = (
            _normal(0, (batch, n_in), dtype=dtype),
            _normal(1, (n_in, n_out), n_in**-0.5, dtype),
            _normal(2, (n_out,), dtype=dtype),
        )

        def torch_fn(args, g):
            torch = _torch()
            if torch is None:
                return {}
            return _torch_variants(lambda x, w, b: torch.addmm(b, x, w), args, g, (None, None, None))

        return _op_variants(convgrad.dense, autodiff.dense, (x, w, b), (0, 1, 2), torch_fn)

    return Benchmark(name, "op", make, description, _product_flops(dense_flops(batch, n_in, n_out)))


def _relu_benchmark(name, shape, description=""):
    def make(dtype):
        return _op_variants(convgrad.relu, autodiff.relu, (_normal(0, shape, dtype=dtype),), (0,))

    return Benchmark(name, "op", make, description)


def _cross_entropy_benchmark(name, batch, classes, description=""):
    def make(dtype):
        labels = jnp.asarray(np.random.default_rng(3).integers(0, classes, batch), jnp.int32)
        custom = lambda z: convgrad.softmax_cross_entropy(z, labels)
        reference = lambda z: autodiff.softmax_cross_entropy(z, labels)
        return _op_variants(custom, reference, (_normal(0, (batch, classes), dtype=dtype),), (0,))

    return Benchmark(name, "op", make, description)


# ---------------------------------------------------------------------------- the MNIST convnet train step


# The convgrad and jax.grad steps timed: variant -> (kit, layout of the cnn). "convgrad step" is
# channels-last; "convgrad step (NCHW)" the default layout of the public ops (what a port of PyTorch
# code writes), and the ratio "convgrad step (NCHW) / convgrad step" its cost over channels-last.
STEP_VARIANTS = {
    "convgrad step": ("custom", "NHWC"),
    "convgrad step (NCHW)": ("custom", "NCHW"),
    "jax.grad step (NHWC)": ("autodiff", "NHWC"),
    "jax.grad step (NCHW)": ("autodiff", "NCHW"),
}

# The optimizers of the step benchmarks: name -> (optax's, PyTorch's constructor from the parameters).
STEP_OPTIMIZERS = {
    "Adam": (lambda: optax.adam(1e-3), lambda torch, params: torch.optim.Adam(params, 1e-3)),
    "SGD momentum": (
        lambda: optax.sgd(1e-2, momentum=0.9),
        lambda torch, params: torch.optim.SGD(params, 1e-2, momentum=0.9),
    ),
}


def _step_benchmark(batch: int = 128, optimizer_name: str = "Adam") -> Benchmark:
    make_optimizer, make_torch_optimizer = STEP_OPTIMIZERS[optimizer_name]

    def make(dtype):
        images = _normal(0, (batch, 28, 28), dtype=dtype)
        labels = jnp.asarray(np.random.default_rng(1).integers(0, 10, batch), jnp.int32)
        optimizer = make_optimizer()
        variants = {}
        for variant, (kit, layout) in STEP_VARIANTS.items():
            model = make_cnn(layout)
            params = model.init(jax.random.key(0))  # the same numbers in either layout
            params = jax.tree.map(lambda p: p.astype(dtype), params)
            state = TrainState(params, optimizer.init(params), model.init_state())
            step = make_step(loss_fn(model, KITS[kit]), optimizer, donate=False)  # each call from the same state
            variants[variant] = (step, (state, images, labels))
        variants.update(_torch_step_variants(images, labels, make_torch_optimizer, dtype))
        return variants

    name = f"mnist cnn train step, batch {batch}" + ("" if optimizer_name == "Adam" else f", {optimizer_name}")
    return Benchmark(
        name, "step", make, f"conv-relu-pool x2, dense 256, dense 10, {optimizer_name}", {"step": step_flops(batch)}
    )


def step_flops(batch: int) -> float:
    """The MNIST convnet's step by direct count: three products per layer, less the first conv's input gradient.

    The convolutions and dense layers only: pooling, relu, the loss and the
    optimizer are a few FLOPs per element, under 1% of these.
    """
    first = conv_flops(batch, 28, 1, 32, 3)
    layers = first + conv_flops(batch, 14, 32, 64, 3) + dense_flops(batch, 3136, 256) + dense_flops(batch, 256, 10)
    return 3 * layers - first


def _torch_step_variants(images, labels, make_optimizer, dtype="float32"):
    """PyTorch's step for the same net and values, in channels-last and contiguous memory formats."""
    torch = _torch()
    if torch is None:
        return {}
    variants = {}
    for memory in ("channels_last", "contiguous"):
        net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 32, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, 64, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Flatten(),
            torch.nn.Linear(3136, 256),
            torch.nn.ReLU(),
            torch.nn.Linear(256, 10),
        )
        net = net.to(getattr(torch, jnp.dtype(dtype).name))
        x = _torch_tensor(torch, images)[:, None]
        if memory == "channels_last":
            net = net.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(np.array(labels)).long()
        optimizer = make_optimizer(torch, net.parameters())

        def step(net=net, x=x, y=y, optimizer=optimizer):
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            optimizer.step()
            return loss

        variants[f"pytorch step ({memory})"] = (step, ())
    return variants


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        _step_benchmark(),
        _step_benchmark(optimizer_name="SGD momentum"),
        _conv_benchmark("conv 1->32 3x3, 28x28, batch 128", 128, 28, 1, 32, description="MNIST conv 1"),
        _conv_benchmark(
            "conv 1->32 3x3, 28x28, batch 128, NCHW", 128, 28, 1, 32, description="MNIST conv 1", layout="NCHW"
        ),
        _conv_benchmark("conv 32->64 3x3, 14x14, batch 128", 128, 14, 32, 64, description="MNIST conv 2"),
        _conv_benchmark(
            "conv 32->64 3x3, 14x14, batch 128, NCHW", 128, 14, 32, 64, description="MNIST conv 2", layout="NCHW"
        ),
        _conv_benchmark("conv 64->64 3x3, 56x56, batch 32", 32, 56, 64, 64, description="ResNet stage 1"),
        _conv_benchmark("conv 128->128 3x3, 28x28, batch 32", 32, 28, 128, 128, description="ResNet stage 2"),
        _conv_benchmark(
            "conv 64->128 3x3 stride 2, 56x56, batch 32", 32, 56, 64, 128, stride=2, description="ResNet downsampling"
        ),
        _pool_benchmark("max_pool 2x2, 28x28x32, batch 128", 128, 28, 32, 2, 2, 0, description="MNIST pool 1"),
        _pool_benchmark(
            "max_pool 2x2, 28x28x32, batch 128, NCHW", 128, 28, 32, 2, 2, 0, description="MNIST pool 1", layout="NCHW"
        ),
        _pool_benchmark("max_pool 2x2, 14x14x64, batch 128", 128, 14, 64, 2, 2, 0, description="MNIST pool 2"),
        _pool_benchmark(
            "max_pool 3x3 stride 2 pad 1, 112x112x64, batch 8", 8, 112, 64, 3, 2, 1, description="ResNet stem"
        ),
        _dense_benchmark("dense 3136->256, batch 128", 128, 3136, 256, description="MNIST dense 1"),
        _relu_benchmark("relu, 128x28x28x32", (128, 28, 28, 32), description="MNIST relu 1"),
        _cross_entropy_benchmark("softmax_cross_entropy, 128x10", 128, 10, description="MNIST loss"),
    )
}


def _block(result):
    return jax.block_until_ready(result) if not _is_torch(result) else result


def _is_torch(result) -> bool:
    module = type(result).__module__ if not isinstance(result, (list, tuple)) else type(result[0]).__module__
    return module.startswith("torch")


def time_variants(
    variants: dict[str, tuple[Callable, tuple]],
    rounds: int,
    warmup: int = 2,
    batch_seconds: float = 0.02,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Seconds per call of each variant, ``rounds`` samples each, interleaved.

    After ``warmup`` untimed calls, each variant gets a batch size: as many
    back-to-back calls as take about ``batch_seconds`` (so a sample is a
    steady-state time per call, as ``timeit`` measures, not one cold call).
    Then, round after round, every variant times one batch, in an order
    shuffled afresh each round (seeded): drifts in machine load, and whatever
    one variant leaves behind in caches or idle threads, fall on all alike.
    """
    for fn, args in variants.values():
        for _ in range(warmup):
            _block(fn(*args))
    batch = {}
    for name, (fn, args) in variants.items():
        start = time.perf_counter()
        _block(fn(*args))
        batch[name] = max(1, math.ceil(batch_seconds / max(time.perf_counter() - start, 1e-9)))
    order, shuffle = list(variants), random.Random(seed).shuffle
    times: dict[str, list[float]] = {name: [] for name in order}
    for _ in range(rounds):
        shuffle(order)
        for name in order:
            fn, args = variants[name]
            start = time.perf_counter()
            for _ in range(batch[name]):
                _block(fn(*args))
            times[name].append((time.perf_counter() - start) / batch[name])
    return times


def run(
    names: Sequence[str] | None = None, *, rounds: int = 31, progress: bool = True, dtype: str = "float32"
) -> dict[str, Any]:
    """Run the chosen benchmarks in ``dtype``; the report holds every variant's median, its samples, and the ratios."""
    if dtype not in DTYPES:
        raise ValueError(f"bench: dtype must be one of {', '.join(DTYPES)}, got dtype={dtype!r}")
    chosen = list(BENCHMARKS) if names is None else list(names)
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        raise ValueError(f"bench: unknown benchmark(s) {unknown}; known: {list(BENCHMARKS)}")
    counted = any(BENCHMARKS[name].flops for name in chosen)
    results = []
    with Progress(len(chosen) + counted, "bench", enabled=progress, unit="benchmarks") as bar:
        gemm = None
        if counted:  # the ceiling the GFLOP/s are measured against, in this run, on this machine
            gemm = gemm_peak(dtype, rounds)
            bar.update(1, note="GEMM peak")
        for name in chosen:
            benchmark = BENCHMARKS[name]
            variants = benchmark.make(dtype)
            times = time_variants(variants, rounds)
            medians = {variant: statistics.median(samples) for variant, samples in times.items()}
            result = {
                "name": name,
                "group": benchmark.group,
                "description": benchmark.description,
                "median_ms": {v: m * 1e3 for v, m in medians.items()},
                "spread": {v: _relative_spread(samples) for v, samples in times.items()},
                "samples_ms": {v: [t * 1e3 for t in s] for v, s in times.items()},
                "ratios": _ratios(medians),
                "same_program": _same_programs(variants),
            }
            if benchmark.flops:
                result["flops"] = benchmark.flops
                result["gflops"] = {
                    v: benchmark.flops[_kind(v)] / m / 1e9 for v, m in medians.items() if _kind(v) in benchmark.flops
                }
                result["gemm_peak_fraction"] = {v: g / gemm["peak_gflops"] for v, g in result["gflops"].items()}
            results.append(result)
            bar.update(1, note=name)
    report = {"machine": machine(), "rounds": rounds, "dtype": dtype, "results": results}
    if gemm is not None:
        report["gemm"] = gemm
    if any(BENCHMARKS[name].group == "step" for name in chosen):
        report["step_memory"] = step_memory()
    report["goals"] = goals(report)
    return report


def _kind(variant: str) -> str:
    """``"convgrad vjp"`` -> ``"vjp"``; ``"pytorch step (contiguous)"`` -> ``"step"``."""
    return variant.split(" ")[1]


# The GEMM the op GFLOP/s are set against: square, large enough for the GEMM kernels' full
# speed, small enough that a call takes about 0.1 s in float32 on the 2-core machine of
# docs/performance.md (101 to 107 ms there).
GEMM_SIZE = 2048


def gemm_peak(dtype: str = "float32", rounds: int = 31, size: int = GEMM_SIZE) -> dict[str, Any]:
    """GFLOP/s of a ``size`` cube matrix product in ``dtype``: XLA's, and PyTorch's when importable, interleaved.

    ``peak_gflops`` is the faster of the two: what a GEMM achieves on this
    machine now, the ceiling each op's GFLOP/s is quoted as a fraction of.
    """
    a, b = _normal(5, (size, size), dtype=dtype), _normal(6, (size, size), dtype=dtype)
    variants = {"xla gemm": (jax.jit(jnp.matmul), (a, b))}
    torch = _torch()
    if torch is not None:
        ta, tb = _torch_tensor(torch, a), _torch_tensor(torch, b)
        variants["pytorch gemm"] = (torch.matmul, (ta, tb))
    medians = {v: statistics.median(s) for v, s in time_variants(variants, rounds).items()}
    flops = 2.0 * size**3
    gflops = {v: flops / m / 1e9 for v, m in medians.items()}
    return {
        "shape": [size, size, size],
        "median_ms": {v: m * 1e3 for v, m in medians.items()},
        "gflops": gflops,
        "peak_gflops": max(gflops.values()),
    }


def _relative_spread(samples: Sequence[float]) -> float:
    """The interquartile range over the median: how much a variant's samples scatter."""
    if len(samples) < 2:
        return 0.0
    low, middle, high = statistics.quantiles(samples, n=4)
    return (high - low) / middle


def _same_programs(variants: dict[str, tuple[Callable, tuple]]) -> list[str]:
    """The kinds (``fwd``, ``vjp``) whose convgrad and jax.grad variants compile to the same XLA program.

    There the two can differ only by timing noise: a ratio away from 1
    measures the noise, not the formulation.
    """
    same = []
    for kind in ("fwd", "vjp"):
        pair = [variants.get(f"{who} {kind}") for who in ("convgrad", "jax.grad")]
        if None in pair or not all(hasattr(fn, "lower") for fn, _ in pair):
            continue
        if _program_text(*pair[0]) == _program_text(*pair[1]):
            same.append(kind)
    return same


def _program_text(fn, args) -> list[str]:
    """The optimized HLO of the entry computation, without metadata (source lines, op names)."""
    text = fn.lower(*args).compile().as_text()
    entry = text[text.index("ENTRY") :]
    return [re.sub(r",? ?metadata=\{[^}]*\}", "", line).strip() for line in entry.splitlines() if "=" in line]


def _ratios(medians: dict[str, float]) -> dict[str, float]:
    """``jax.grad / convgrad`` (and ``pytorch / convgrad``) for each pair present; > 1 means convgrad is faster.

    A convgrad variant in another layout, ``convgrad step (NCHW)``, is compared with
    ``convgrad step`` (``convgrad step (NCHW) / convgrad step``: > 1 means the other
    layout is slower), and the other implementations' variants of the same layout
    with it (``jax.grad step (NCHW) / convgrad step (NCHW)``).
    """
    ratios = {}
    for kind in ("fwd", "vjp", "step"):
        ours = medians.get(f"convgrad {kind}")
        if ours is None:
            continue
        theirs = {v: m for v, m in medians.items() if not v.startswith("convgrad") and _kind(v) == kind}
        for variant, median in theirs.items():
            ratios[f"{variant} / convgrad {kind}"] = median / ours
        for variant, median in medians.items():
            layout = re.fullmatch(rf"convgrad {kind} (\(.+\))", variant)
            if layout is None:
                continue
            ratios[f"{variant} / convgrad {kind}"] = median / ours
            for other, other_median in theirs.items():
                if other.endswith(f" {layout.group(1)}"):
                    ratios[f"{other} / {variant}"] = other_median / median
    return ratios


# The performance goals (docs/performance.md), checked on each run's own numbers: the default layout's
# step within 1.1x of channels-last's; both steps at least 1.2x faster than PyTorch's faster layout;
# each conv layer's forward and VJP at least as fast as PyTorch's faster layout; each step's peak
# memory at most jax.grad's in the same layout.
STEP_LAYOUT_MAX = 1.1
STEP_PYTORCH_MIN = 1.2
CONV_PYTORCH_MIN = 1.0
STEP_MEMORY_MAX = 1.0


def goals(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Whether this run meets each performance goal, from its own medians: one entry per goal and benchmark.

    Each entry holds ``goal`` (what is compared, as ``time a / time b`` or a
    memory ratio), ``value`` (the ratio measured), ``bound`` and ``met``
    (``value <= bound`` for ``"at most"``, ``>=`` for ``"at least"``).
    PyTorch's best layout is the faster of its variants: the step's
    channels-last and contiguous ones; for a conv layer, its ``pytorch`` time
    in the layer's two rows when both ran (channels-last memory in one,
    contiguous in the ``, NCHW`` row). A goal whose variants did not run (no
    PyTorch, a subset of ``--ops``) is left out.
    """
    entries = []

    def add(goal, value, relation, bound):
        met = value <= bound if relation == "at most" else value >= bound
        entries.append({"goal": goal, "value": value, "relation": relation, "bound": bound, "met": bool(met)})

    results = report["results"]
    for result in (r for r in results if r["group"] == "step"):
        medians, name = result["median_ms"], result["name"]
        ours = [v for v in ("convgrad step", "convgrad step (NCHW)") if v in medians]
        if len(ours) == 2:
            add(
                f"{name}: convgrad step (NCHW) / convgrad step",
                medians[ours[1]] / medians[ours[0]],
                "at most",
                STEP_LAYOUT_MAX,
            )
        theirs = {v: m for v, m in medians.items() if v.startswith("pytorch step")}
        if theirs:
            best = min(theirs, key=theirs.get)
            for variant in ours:
                add(f"{name}: {best} / {variant}", theirs[best] / medians[variant], "at least", STEP_PYTORCH_MIN)
    layers: dict[str, list[dict[str, Any]]] = {}
    for result in (r for r in results if r["name"].startswith("conv ")):
        layers.setdefault(result["name"].removesuffix(", NCHW"), []).append(result)
    for rows in layers.values():
        for kind in ("fwd", "vjp"):
            theirs = [r["median_ms"][f"pytorch {kind}"] for r in rows if f"pytorch {kind}" in r["median_ms"]]
            if not theirs:
                continue
            for result in rows:
                add(
                    f"{result['name']}: best pytorch {kind} / convgrad {kind}",
                    min(theirs) / result["median_ms"][f"convgrad {kind}"],
                    "at least",
                    CONV_PYTORCH_MIN,
                )
    memory = report.get("step_memory", {})
    for ours, theirs in (("convgrad step", "jax.grad step (NHWC)"), ("convgrad step (NCHW)", "jax.grad step (NCHW)")):
        if ours in memory and theirs in memory:
            add(
                f"peak memory: {ours} / {theirs}",
                memory[ours]["peak_bytes"] / memory[theirs]["peak_bytes"],
                "at most",
                STEP_MEMORY_MAX,
            )
    return entries


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info = {
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpus": _cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "backend": jax.default_backend(),
    }
    torch = _torch()
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def format_table(report: dict[str, Any]) -> str:
    """Medians (ms) per benchmark and variant, and the speed ratios, as text."""
    lines = [f"{report['machine']['processor']}, {report['machine']['cpus']} cpus, jax {report['machine']['jax']}"]
    if "gemm" in report:
        gemm = report["gemm"]
        measured = ", ".join(f"{v} {g:.0f}" for v, g in gemm["gflops"].items())
        lines.append(f"GEMM peak {gemm['peak_gflops']:.0f} GFLOP/s ({'x'.join(map(str, gemm['shape']))}: {measured})")
    for result in report["results"]:
        lines.append(f"{result['name']}  ({result['description']})")
        for variant, median in result["median_ms"].items():
            line = f"  {variant:28s} {median:9.2f} ms  (IQR {100 * result['spread'][variant]:.0f}%)"
            if variant in result.get("gflops", {}):
                gflops, fraction = result["gflops"][variant], result["gemm_peak_fraction"][variant]
                line += f"  {gflops:6.1f} GFLOP/s, {100 * fraction:3.0f}% of GEMM peak"
            lines.append(line)
        for kind in result["same_program"]:
            lines.append(f"  convgrad {kind} and jax.grad {kind} compile to the same XLA program: any gap is noise")
        for label, ratio in result["ratios"].items():
            lines.append(f"  {label:48s} {ratio:6.2f}x")
    for variant, stats in report.get("step_memory", {}).items():
        peak, temporaries = stats["peak_bytes"] / 2**20, stats["temp_bytes"] / 2**20
        lines.append(f"peak memory of {variant}: {peak:.1f} MiB (temporaries {temporaries:.1f} MiB)")
    entries = report.get("goals", [])
    if entries:
        met = sum(entry["met"] for entry in entries)
        lines.append(f"goals (docs/performance.md): {met} of {len(entries)} met in this run")
        width = max(len(entry["goal"]) for entry in entries)
        for entry in entries:
            verdict = "met   " if entry["met"] else "MISSED"
            bound = f"{entry['relation']} {entry['bound']:.2f}"
            lines.append(f"  {verdict} {entry['goal']:{width}s} {entry['value']:6.2f}  ({bound})")
    return "\n".join(lines)


def step_memory(batch: int = 128) -> dict[str, dict[str, int]]:
    """XLA's memory analysis of each compiled train step: arguments, outputs, temporaries (bytes)."""
    memory = {}
    for variant, (fn, args) in _step_benchmark(batch).make("float32").items():
        if variant.startswith("pytorch"):
            continue
        stats = fn.lower(*args).compile().memory_analysis()
        memory[variant] = {
            "argument_bytes": stats.argument_size_in_bytes,
            "output_bytes": stats.output_size_in_bytes,
            "temp_bytes": stats.temp_size_in_bytes,
            "peak_bytes": stats.argument_size_in_bytes
            + stats.output_size_in_bytes
            + stats.temp_size_in_bytes
            - stats.alias_size_in_bytes,
        }
    return memory


def select(tokens: Sequence[str] | None) -> list[str]:
    """Benchmark names containing any of ``tokens`` (e.g. ``conv``, ``max_pool``, ``step``); all when None."""
    if not tokens:
        return list(BENCHMARKS)
    chosen = [name for name in BENCHMARKS if any(token in name for token in tokens)]
    if not chosen:
        raise ValueError(f"bench: no benchmark matches {list(tokens)}; known: {list(BENCHMARKS)}")
    return chosen


def plot(report: dict[str, Any], path: str) -> None:
    """Bars of ``other / convgrad`` time ratios per benchmark, log axis (right of 1: convgrad faster); matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for result in report["results"]:
        kind = "step" if result["group"] == "step" else "vjp"
        for label, ratio in result["ratios"].items():
            if label.endswith(f"convgrad {kind}"):
                rows.append((result["name"], label.split(" / ")[0], ratio))
    names = list(dict.fromkeys(r[0] for r in rows))
    variants = list(dict.fromkeys(r[1] for r in rows))
    colours = dict(zip(variants, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, ax = plt.subplots(figsize=(10, 0.62 * len(rows) + 1.6))
    y, ticks = 0.0, []
    for name in names:
        mine = [r for r in rows if r[0] == name]
        ticks.append((y + (len(mine) - 1) / 2, name))
        for _, variant, ratio in mine:
            ax.barh(y, ratio - 1, left=1, height=0.8, color=colours[variant])
            ax.text(
                ratio * (1.04 if ratio >= 1 else 0.96),
                y,
                f"{ratio:.2f}x",
                va="center",
                fontsize=7,
                ha="left" if ratio >= 1 else "right",
            )
            y += 1
        y += 0.6
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks([t for t, _ in ticks], [n for _, n in ticks], fontsize=8)
    ax.invert_yaxis()
    low = min(r for *_, r in rows)
    ax.set_xlim(min(0.1, low / 1.5), max(r for *_, r in rows) * 2)
    ax.set_xlabel("time of the other implementation / time of convgrad (log scale; > 1: convgrad faster)")
    machine = report["machine"]
    ax.set_title(
        f"convgrad vs jax.grad and PyTorch: VJP (forward + backward) per op, and the MNIST train step\n"
        f"{machine['processor']}, {machine['cpus']} cores, jax {machine['jax']}"
        + (f", torch {machine['torch']}" if "torch" in machine else "")
        + f"; median of {report['rounds']} interleaved rounds",
        fontsize=9,
    )
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[v]) for v in variants]
    ax.legend(handles, [f"{v} / convgrad" for v in variants], fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""Time convgrad's training step on 1, 2, 4 and 8 devices side by side, in one process (the numbers in docs/scaling.md).

Run from the repository root, with the devices JAX should see set before it starts:

    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu PYTHONPATH=. \\
        python docs/scaling_benchmark.py --model cnn --batch-sizes 128,256

For each batch size and device count it builds what :func:`convgrad.train.train`
builds (the data mesh, the jit-compiled step with explicit shardings, the
replicated state and dataset, the sharded batch indices), compiles every step
first, then interleaves the repetitions (1, 2, 4, 8, 1, 2, ...) so that changes
in the machine's load fall on every device count alike. Each repetition runs
``--steps`` steps to completion; the table gives the median time per step, the
fastest and slowest repetition, and the median relative to one device.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import numpy as np

from convgrad import parallel, train
from convgrad.models import KITS, MODELS, loss_fn


def _ints(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item.strip()]


def prepare(config: train.TrainConfig, devices: int, images: np.ndarray, labels: np.ndarray, steps: int):
    """``run() -> seconds per step`` for ``steps`` steps of ``config`` over the first ``devices`` devices."""
    mesh = parallel.data_mesh(devices)
    model = MODELS[config.model]
    optimizer = train.make_optimizer(config, steps)
    step = train.make_step(loss_fn(model, KITS[config.grads]), optimizer, mesh=mesh)
    state = [train.replicate(train.init_state(model, config, optimizer), mesh)]
    train_x, train_y = train.replicate((images, labels), mesh)
    size = config.batch_size
    batches = [
        parallel.global_array(np.arange(i * size, (i + 1) * size, dtype=np.int32), parallel.batch_sharded(mesh))
        for i in range(steps)
    ]

    def run() -> float:
        start = time.perf_counter()
        for batch in batches:
            state[0], loss = step(state[0], train_x, train_y, batch)
        jax.block_until_ready((state[0], loss))
        return (time.perf_counter() - start) / steps

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="cnn")
    parser.add_argument("--grads", choices=["custom", "autodiff"], default="custom")
    parser.add_argument("--batch-sizes", type=_ints, default=[128, 256])
    parser.add_argument("--devices", type=_ints, default=[1, 2, 4, 8])
    parser.add_argument("--steps", type=int, default=5, help="steps per repetition")
    parser.add_argument("--repetitions", type=int, default=9)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n = max(args.batch_sizes) * args.steps
    images = rng.standard_normal((n, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, n).astype(np.int32)
    load_before = os.getloadavg()[0]
    runs, first = {}, {}
    for batch_size in args.batch_sizes:
        config = train.TrainConfig(model=args.model, batch_size=batch_size, grads=args.grads, epochs=1)
        for devices in args.devices:
            runs[batch_size, devices] = prepare(config, devices, images, labels, args.steps)
            start = time.perf_counter()
            runs[batch_size, devices]()  # compiles
            first[batch_size, devices] = time.perf_counter() - start
    times: dict[tuple[int, int], list[float]] = {key: [] for key in runs}
    for _ in range(args.repetitions):
        for key, run in runs.items():
            times[key].append(run())

    print(
        f"{args.model} training step ({args.grads} gradients, adam), jax {jax.__version__}, "
        f"{jax.devices()[0].platform} devices: {jax.device_count()} seen, {os.cpu_count()} CPU cores; "
        f"{args.repetitions} interleaved repetitions of {args.steps} steps; "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after\n"
    )
    print("| batch | devices | per device | ms per step, median | fastest - slowest | vs 1 device | first call, s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (batch_size, devices), seconds in times.items():
        median = statistics.median(seconds)
        base = statistics.median(times[batch_size, args.devices[0]])
        print(
            f"| {batch_size} | {devices} | {batch_size // devices} | {1e3 * median:.1f} | "
            f"{1e3 * min(seconds):.1f} - {1e3 * max(seconds):.1f} | {median / base:.2f}x | "
            f"{first[batch_size, devices]:.1f} |"
        )


if __name__ == "__main__":
    main()

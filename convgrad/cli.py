"""``convgrad`` / ``python -m convgrad``: the command line.

Subcommands: ``verify`` (check every registry op's VJP four ways), ``train``
(MNIST on convgrad's VJPs or on autodiff), ``bench`` (convgrad vs jax.grad timings).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import jax


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _device_context(platform: str | None):
    """``jax.default_device`` for the first device of ``platform``, or a clear error if JAX sees none."""
    if platform is None:
        return contextlib.nullcontext()
    try:
        devices = jax.devices(platform)
    except RuntimeError as error:
        raise SystemExit(f"convgrad: --device {platform}: JAX sees no {platform} device ({error})") from None
    return jax.default_device(devices[0])


def _mesh(command: str, devices: int | None, platform: str | None = None):
    """The ``data`` mesh over ``devices`` devices, or a clear error listing the devices JAX sees."""
    from convgrad import parallel

    try:
        return parallel.data_mesh(devices, platform=platform)
    except ValueError as error:
        raise SystemExit(f"convgrad: {command}: --devices: {error}") from None


def _verify(args: argparse.Namespace) -> int:
    from convgrad import verify
    from convgrad.files import atomic_write_text

    try:
        triples = verify.plan(args.ops, quick=args.quick, dtypes=args.dtypes)
    except ValueError as error:
        raise SystemExit(f"convgrad: {error}") from None
    mesh = None if args.devices is None else _mesh("verify", args.devices, args.device)
    with _device_context(args.device):
        device = str(jax.devices(args.device)[0] if args.device else jax.devices()[0])
        results = verify.run(triples, seed=args.seed, progress=not args.no_progress, mesh=mesh)
    rows = verify.summarize(results)
    print(f"convgrad verify on {device} (jax {jax.__version__}): max relative error per check")
    print(verify.format_table(rows))
    if mesh is not None:
        print(verify.describe_sharded(results, mesh))
    failures = [r for r in results if not r.passed]
    for failure in failures:
        print(f"\nFAIL {failure.op} {failure.dtype} {failure.case}:\n  {failure.failure}")
    print(f"\n{len(results) - len(failures)}/{len(results)} cases passed")
    if args.json is not None:
        report = {
            "device": device,
            "jax_version": jax.__version__,
            "quick": args.quick,
            "seed": args.seed,
            "devices": args.devices,
            "passed": not failures,
            "summary": rows,
            "cases": [vars(r) | {"passed": r.passed} for r in results],
        }
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
        print(f"report written to {args.json}")
    return 1 if failures else 0


def _train(args: argparse.Namespace) -> int:
    from convgrad import parallel, train
    from convgrad.data import MNISTError, MNISTNotFoundError
    from convgrad.files import atomic_write_text

    cluster = {
        "--coordinator-address": args.coordinator_address,
        "--num-processes": args.num_processes,
        "--process-id": args.process_id,
    }
    if args.distributed:  # before anything touches a device
        parallel.initialize_distributed(*cluster.values())
    elif given := [flag for flag, value in cluster.items() if value is not None]:
        raise SystemExit(f"convgrad: train: {', '.join(given)} only apply with --distributed")
    if jax.process_count() > 1 and args.devices not in (None, jax.device_count()):
        raise SystemExit(
            f"convgrad: train: --devices {args.devices}: a multi-host run spans every process's devices, "
            f"all {jax.device_count()} of them; leave --devices out"
        )
    mesh = _mesh("train", args.devices)
    try:
        config = train.TrainConfig(
            model=args.model,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            grads=args.grads,
            optimizer=args.optimizer,
            momentum=args.momentum,
            schedule=args.schedule,
        )
        parallel.check_divides(config.batch_size, mesh, "train: --batch-size")
    except ValueError as error:
        raise SystemExit(f"convgrad: {error}") from None
    try:
        dataset = train.load_dataset(args.data_dir, progress=not args.no_progress)
    except (MNISTError, MNISTNotFoundError) as error:
        raise SystemExit(f"convgrad: {error}") from None
    n_devices = parallel.data_axis_size(mesh)
    where = str(mesh.devices.flat[0])
    if n_devices > 1:
        where += f" and {n_devices - 1} more, data-parallel ({config.batch_size // n_devices} examples per device)"
    if jax.process_count() > 1:
        where += f", process {jax.process_index()} of {jax.process_count()}"
    print(
        f"training {config.model} ({train.MODELS[config.model].description}) with {config.grads} gradients on {where}"
    )

    def on_epoch(record):
        print(
            f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, "
            f"test accuracy {record['test_accuracy']:.4f}, {record['seconds']:.1f}s "
            f"({record['examples_per_second']:,.0f} examples/s)",
            flush=True,
        )

    try:
        _, report = train.train(
            config,
            dataset,
            checkpoint_dir=args.checkpoint_dir,
            resume=args.resume,
            progress=not args.no_progress,
            on_epoch=on_epoch,
            mesh=mesh,
        )
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"convgrad: {error}") from None
    print(
        f"done: {config.model}, {len(report['history'])} epochs, test accuracy {report['test_accuracy']:.4f}, "
        f"{report['train_seconds']:.1f}s training"
    )
    if args.json is not None and jax.process_index() == 0:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
        print(f"report written to {args.json}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from convgrad import bench
    from convgrad.files import atomic_write_text

    try:
        names = bench.select(args.ops)
    except ValueError as error:
        raise SystemExit(f"convgrad: {error}") from None
    report = bench.run(names, rounds=args.rounds, progress=not args.no_progress)
    print(bench.format_table(report))
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
        print(f"report written to {args.json}")
    if args.plot is not None:
        bench.plot(report, str(args.plot))
        print(f"plot written to {args.plot}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convgrad", description="Hand-derived VJPs for convnets, and their checks.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    verify = commands.add_parser(
        "verify",
        help="check every op's VJP vs autodiff, finite differences, a loop reference and the adjoint identity",
        description="Check every registry op's VJP against jax.vjp of a plain-lax reference, central finite "
        "differences, a NumPy loop reference and the adjoint identity, under jit, vmap and grad-of-grad.",
    )
    verify.add_argument("--quick", action="store_true", help="two cases per op, float32 only")
    verify.add_argument("--ops", type=_comma_list, default=None, help="comma-separated op names (default: all)")
    verify.add_argument("--dtypes", type=_comma_list, default=None, help="comma-separated dtypes (default: the op's)")
    verify.add_argument("--device", choices=["cpu", "gpu", "tpu"], default=None, help="run on this platform")
    verify.add_argument(
        "--devices",
        type=int,
        default=None,
        metavar="N",
        help="also run each VJP under jit with its inputs sharded over a mesh of N devices and compare",
    )
    verify.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the full report here")
    verify.add_argument("--seed", type=int, default=0)
    verify.add_argument("--no-progress", action="store_true", help="no progress bar")
    verify.set_defaults(handler=_verify)

    train = commands.add_parser(
        "train",
        help="train an MNIST model on convgrad's hand-derived VJPs (or on jax.grad, to compare)",
        description="Train an MNIST model, jit-compiled, with every gradient from convgrad's hand-derived VJPs "
        "(--grads custom) or from jax.grad of the same network in plain lax (--grads autodiff).",
    )
    train.add_argument("--model", choices=["linear", "mlp", "mlp2", "cnn"], default="mlp")
    train.add_argument("--epochs", type=int, default=5)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 2e-3)")
    train.add_argument(
        "--schedule", choices=["cosine", "constant"], default="cosine", help="learning-rate schedule over the run"
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--grads", choices=["custom", "autodiff"], default="custom")
    train.add_argument("--optimizer", choices=["adam", "sgd"], default="adam", help="adam, or sgd with momentum")
    train.add_argument("--momentum", type=float, default=0.9, help="momentum for --optimizer sgd")
    train.add_argument("--data-dir", type=Path, default=None, help="directory with the MNIST IDX files")
    train.add_argument("--checkpoint-dir", type=Path, default=None, help="write a checkpoint here each epoch")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    train.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the report here")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument(
        "--devices",
        type=int,
        default=None,
        metavar="N",
        help="data-parallel over the first N devices (default: all that JAX sees); N must divide --batch-size",
    )
    train.add_argument(
        "--distributed",
        action="store_true",
        help="multi-host: call jax.distributed.initialize() first (one process per host, same command on each)",
    )
    train.add_argument(
        "--coordinator-address", default=None, metavar="HOST:PORT", help="with --distributed: process 0's address"
    )
    train.add_argument("--num-processes", type=int, default=None, help="with --distributed: how many processes")
    train.add_argument("--process-id", type=int, default=None, help="with --distributed: this process's index")
    train.set_defaults(handler=_train)

    bench = commands.add_parser(
        "bench",
        help="time convgrad's VJPs against jax.grad (and PyTorch, if installed), side by side",
        description="Per-op forward and VJP times for fixed shapes and the MNIST convnet train step: convgrad vs "
        "jax.grad of plain lax, and PyTorch when importable. Interleaved rounds, medians, ratios.",
    )
    bench.add_argument("--ops", type=_comma_list, default=None, help="benchmarks whose names contain these words")
    bench.add_argument("--rounds", type=int, default=31, help="timed rounds per benchmark (default 31)")
    bench.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the full report here")
    bench.add_argument("--plot", type=Path, default=None, metavar="PATH", help="write a PNG of the ratios (matplotlib)")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.set_defaults(handler=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

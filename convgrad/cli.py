"""``convgrad`` / ``python -m convgrad``: the command line.

Subcommands: ``verify`` (check every registry op's VJP four ways), ``train``
(MNIST on convgrad's VJPs or on autodiff), ``bench`` (convgrad vs jax.grad timings).

Every path argument is checked before any work starts: an input directory must be a
readable directory, an output directory a writable one (or creatable), an output file
must not be a directory and its directory must be writable. Errors are one message on
stderr, never a traceback for an ``OSError``, and the exit status says which kind of
failure it was (:class:`ExitCode`, the table in the README).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import enum
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import jax

import convgrad
from convgrad import files


class ExitCode(enum.IntEnum):
    """The exit status of ``convgrad``: what kind of failure ended it."""

    OK = 0
    CHECK_FAILED = 1
    USAGE = 2
    DATA = 3
    CHECKPOINT = 4
    OS_ERROR = 5
    INTERRUPTED = 130


EXIT_CODES = {
    ExitCode.OK: "success (verify: every check passed)",
    ExitCode.CHECK_FAILED: "verify: at least one gradient check failed",
    ExitCode.USAGE: "bad command line: an unknown option, a bad value, or a path argument that cannot be used "
    "(all checked before any work)",
    ExitCode.DATA: "train: the MNIST files are missing, unreadable or corrupt",
    ExitCode.CHECKPOINT: "train --resume: no checkpoint, an unreadable, truncated or corrupt one, or one written "
    "by another configuration",
    ExitCode.OS_ERROR: "the operating system refused an operation during the run (disk full, permission lost, ...); "
    "the message names the file",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}


class CommandError(Exception):
    """A failure to report as one line, ``convgrad: MESSAGE``, with exit status ``code``."""

    def __init__(self, code: ExitCode, message: str):
        self.code, self.message = code, message
        super().__init__(message)


def _flag(argument: str) -> str:
    """The option of a library argument: ``batch_size`` -> ``--batch-size``."""
    return "--" + argument.replace("_", "-")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _check_paths(
    command: str,
    *,
    input_dirs: dict[str, Path | None] | None = None,
    output_dirs: dict[str, Path | None] | None = None,
    output_files: dict[str, Path | None] | None = None,
) -> None:
    """Every given path usable for its role, or a usage error naming the option, the path and the problem."""
    checks = [
        (input_dirs, files.input_directory_problem),
        (output_dirs, files.output_directory_problem),
        (output_files, files.output_file_problem),
    ]
    for paths, problem_of in checks:
        for flag, path in (paths or {}).items():
            if path is not None and (problem := problem_of(path)) is not None:
                raise CommandError(ExitCode.USAGE, f"{command}: {flag} {path}: {problem}")


def _describe(error: OSError) -> str:
    """``No space left on device: /runs/report.json``: what the OS said, and the file."""
    if error.strerror and error.filename:
        return f"{error.strerror}: {error.filename}"
    return str(error)


def _device_context(platform: str | None):
    """``jax.default_device`` for the first device of ``platform``, or a clear error if JAX sees none."""
    if platform is None:
        return contextlib.nullcontext()
    try:
        devices = jax.devices(platform)
    except RuntimeError as error:
        raise CommandError(ExitCode.USAGE, f"--device {platform}: JAX sees no {platform} device ({error})") from None
    return jax.default_device(devices[0])


def _mesh(command: str, devices: int | None, platform: str | None = None):
    """The ``data`` mesh over ``devices`` devices, or a clear error listing the devices JAX sees."""
    from convgrad import parallel

    try:
        return parallel.data_mesh(devices, platform=platform)
    except ValueError as error:
        raise CommandError(ExitCode.USAGE, f"{command}: --devices: {error}") from None


def _write_report(path: Path, report: dict) -> None:
    files.atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    print(f"report written to {path}")


def _verify(args: argparse.Namespace) -> int:
    from convgrad import verify

    _check_paths(
        "verify", output_files={"--json": args.json}, output_dirs={"--compilation-cache": args.compilation_cache}
    )
    try:
        triples = verify.plan(args.ops, quick=args.quick, dtypes=args.dtypes)
    except ValueError as error:
        raise CommandError(ExitCode.USAGE, str(error)) from None
    mesh = None if args.devices is None else _mesh("verify", args.devices, args.device)
    with _device_context(args.device):
        device = str(jax.devices(args.device)[0] if args.device else jax.devices()[0])
        results = verify.run(
            triples,
            seed=args.seed,
            progress=not args.no_progress,
            mesh=mesh,
            jobs=args.jobs,
            platform=args.device,
            compilation_cache=args.compilation_cache,
            xla_defaults=args.xla_defaults,
        )
        options = verify.compiler_options(args.xla_defaults)  # after run: its probes go to the compilation cache
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
            "xla_defaults": args.xla_defaults,
            "compiler_options": options,
            "passed": not failures,
            "summary": rows,
            "cases": [vars(r) | {"passed": r.passed} for r in results],
        }
        _write_report(args.json, report)
    return ExitCode.CHECK_FAILED if failures else ExitCode.OK


def _train(args: argparse.Namespace) -> int:
    from convgrad import parallel, train
    from convgrad.data import MNISTError

    _check_paths(
        "train",
        input_dirs={"--data-dir": args.data_dir},
        output_dirs={"--checkpoint-dir": args.checkpoint_dir},
        output_files={"--json": args.json},
    )
    if args.resume and args.checkpoint_dir is None:
        raise CommandError(ExitCode.USAGE, "train: --resume needs --checkpoint-dir, the directory of the checkpoint")
    cluster = {
        "--coordinator-address": args.coordinator_address,
        "--num-processes": args.num_processes,
        "--process-id": args.process_id,
    }
    if args.distributed:  # before anything touches a device
        parallel.initialize_distributed(*cluster.values())
    elif given := [flag for flag, value in cluster.items() if value is not None]:
        raise CommandError(ExitCode.USAGE, f"train: {', '.join(given)} only apply with --distributed")
    if jax.process_count() > 1 and args.devices not in (None, jax.device_count()):
        raise CommandError(
            ExitCode.USAGE,
            f"train: --devices {args.devices}: a multi-host run spans every process's devices, "
            f"all {jax.device_count()} of them; leave --devices out",
        )
    mesh = _mesh("train", args.devices)
    try:
        config = train.TrainConfig(
            **{field.name: getattr(args, field.name) for field in dataclasses.fields(train.TrainConfig)}
        )
    except train.ConfigError as error:
        raise CommandError(ExitCode.USAGE, _config_message(error)) from None
    if (problem := parallel.split_problem(config.batch_size, mesh)) is not None:
        raise CommandError(ExitCode.USAGE, f"train: --batch-size={config.batch_size} {problem}")
    if args.resume:
        with _checkpoint_errors():
            train.check_resumable(args.checkpoint_dir, config)
    try:
        dataset = train.load_dataset(args.data_dir, progress=not args.no_progress)
    except (MNISTError, OSError) as error:
        message = _describe(error) if isinstance(error, OSError) and error.filename else str(error)
        raise CommandError(ExitCode.DATA, f"train: {message}") from None
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
        with _checkpoint_errors():
            _, report = train.train(
                config,
                dataset,
                checkpoint_dir=args.checkpoint_dir,
                resume=args.resume,
                progress=not args.no_progress,
                on_epoch=on_epoch,
                mesh=mesh,
            )
    except train.ConfigError as error:
        raise CommandError(ExitCode.USAGE, _config_message(error)) from None
    print(
        f"done: {config.model}, {len(report['history'])} epochs, test accuracy {report['test_accuracy']:.4f}, "
        f"{report['train_seconds']:.1f}s training"
    )
    if args.json is not None and jax.process_index() == 0:
        _write_report(args.json, report)
    return ExitCode.OK


def _config_message(error) -> str:
    """A :class:`convgrad.train.ConfigError` under the option names: ``train: --lr=0.0 is not positive``."""
    return f"train: {_flag(error.argument)}={error.value} {error.problem}"


@contextlib.contextmanager
def _checkpoint_errors():
    """A :class:`convgrad.train.CheckpointError` as a one-line ``--resume`` error with the option names."""
    from convgrad import train

    try:
        yield
    except train.ConfigMismatchError as error:
        shown = ", ".join(
            f"{_flag(name)} {now} but the checkpoint has {then}" for name, (now, then) in error.mismatched.items()
        )
        raise CommandError(
            ExitCode.CHECKPOINT,
            f"train: --resume: {error.path} was written by another configuration: {shown} ({train.RESUME_HINT})",
        ) from None
    except train.CheckpointError as error:
        raise CommandError(ExitCode.CHECKPOINT, f"train: --resume: {error}") from None


def _bench(args: argparse.Namespace) -> int:
    from convgrad import bench

    _check_paths("bench", output_files={"--json": args.json, "--plot": args.plot})
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise CommandError(ExitCode.USAGE, "bench: --plot needs matplotlib (pip install matplotlib)")
    if args.dtype not in bench.DTYPES:
        raise CommandError(
            ExitCode.USAGE, f"bench: --dtype must be one of {', '.join(bench.DTYPES)}, got {args.dtype!r}"
        )
    try:
        names = bench.select(args.ops)
    except ValueError as error:
        raise CommandError(ExitCode.USAGE, str(error)) from None
    report = bench.run(names, rounds=args.rounds, progress=not args.no_progress, dtype=args.dtype)
    print(bench.format_table(report))
    if args.json is not None:
        _write_report(args.json, report)
    if args.plot is not None:
        bench.plot(report, str(args.plot))
        print(f"plot written to {args.plot}")
    return ExitCode.OK


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`convgrad.train.TrainConfig` field: its type, default, choices and help from there."""
    from convgrad.train import TrainConfig

    types = TrainConfig.field_types()
    for field in dataclasses.fields(TrainConfig):
        options = {"default": field.default, "help": f"{field.metadata.get('help', '')} (default: %(default)s)"}
        if types[field.name] is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = types[field.name]
        if "choices" in field.metadata:
            options["choices"] = list(field.metadata["choices"])
        parser.add_argument(_flag(field.name), **options)


def _exit_codes_text() -> str:
    return "exit status:\n" + "\n".join(f"  {int(code):<4d} {meaning}" for code, meaning in EXIT_CODES.items())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convgrad",
        description="Hand-derived VJPs for convnets, and their checks.",
        epilog=_exit_codes_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"convgrad {convgrad.__version__} (jax {jax.__version__})"
    )
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
    verify.add_argument(
        "--jobs",
        type=_positive_int,
        default=None,
        metavar="N",
        help="worker processes checking cases side by side (default: one per CPU on CPU, at most one per 8 cases; "
        "1 on an accelerator)",
    )
    verify.add_argument(
        "--compilation-cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep every compiled program in JAX's persistent compilation cache here: a rerun loads them "
        "instead of compiling (verify --quick: 43 s, then 10 s); a cache is trusted code, keep it private",
    )
    verify.add_argument(
        "--xla-defaults",
        action="store_true",
        help="compile the programs under test with XLA's default options (2x to 3x the time); by default they "
        "compile on CPU like the instruments, with XLA's backend optimizations off and its loop emitters",
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
    _add_config_options(train)
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
    bench.add_argument(
        "--dtype", default="float32", help="the arrays' and parameters' dtype: float32 (default), bfloat16 or float16"
    )
    bench.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the full report here")
    bench.add_argument("--plot", type=Path, default=None, metavar="PATH", help="write a PNG of the ratios (matplotlib)")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.set_defaults(handler=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``convgrad ARGV``; the exit status (:class:`ExitCode`). Errors are printed to stderr as one message."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version (0) or a usage error (2), printed by argparse
        return exit_.code if isinstance(exit_.code, int) else ExitCode.USAGE
    try:
        return int(args.handler(args))
    except CommandError as error:
        print(f"convgrad: {error.message}", file=sys.stderr)
        return error.code
    except OSError as error:
        print(f"convgrad: {args.command}: {_describe(error)}", file=sys.stderr)
        return ExitCode.OS_ERROR
    except KeyboardInterrupt:
        print("\nconvgrad: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

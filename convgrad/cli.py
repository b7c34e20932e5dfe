"""``convgrad`` / ``python -m convgrad``: the command line.

Subcommands: ``verify`` (check every registry op's VJP four ways).
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


def _verify(args: argparse.Namespace) -> int:
    from convgrad import verify
    from convgrad.files import atomic_write_text

    try:
        triples = verify.plan(args.ops, quick=args.quick, dtypes=args.dtypes)
    except ValueError as error:
        raise SystemExit(f"convgrad: {error}") from None
    with _device_context(args.device):
        device = str(jax.devices(args.device)[0] if args.device else jax.devices()[0])
        results = verify.run(triples, seed=args.seed, progress=not args.no_progress)
    rows = verify.summarize(results)
    print(f"convgrad verify on {device} (jax {jax.__version__}): max relative error per check")
    print(verify.format_table(rows))
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
            "passed": not failures,
            "summary": rows,
            "cases": [vars(r) | {"passed": r.passed} for r in results],
        }
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
        print(f"report written to {args.json}")
    return 1 if failures else 0


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
    verify.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the full report here")
    verify.add_argument("--seed", type=int, default=0)
    verify.add_argument("--no-progress", action="store_true", help="no progress bar")
    verify.set_defaults(handler=_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

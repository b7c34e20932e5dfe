"""The XLA flags the test suite compiles with, and how a subprocess gets XLA's defaults back.

The suite compiles its many small programs with XLA:CPU's backend (LLVM) optimizations off
and with its older loop emitters in place of the fusion emitters: compilation is most of
the suite's time, and the loop emitters cut it (30 registry cases: 23.7 s of XLA compile at
``-O0`` alone, 7.2 s with them; pytest on a fresh clone 908 s -> 530 s; docs/performance.md). They
change code generation only (XLA:CPU's fast-math stays off), and no tolerance depends on
them. ``CONVGRAD_TEST_XLA_DEFAULTS=1`` keeps XLA's defaults; tests of behaviour seen only
with the defaults run in a fresh process with :func:`with_xla_defaults`.
"""

from __future__ import annotations

import os
import subprocess
import sys

# CONVGRAD_TEST_XLA_DEFAULTS=1: XLA's defaults for the whole suite, verify_case's programs under test too.
XLA_DEFAULTS = bool(os.environ.get("CONVGRAD_TEST_XLA_DEFAULTS"))
SUITE_FLAGS = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")


def suite_xla_flags(flags: str) -> str:
    """``flags`` (an ``XLA_FLAGS`` value) with the suite's flags that this jaxlib knows added; set before JAX starts.

    XLA aborts a process on a flag it does not know, so each is tried in a
    subprocess first (once: pytest-xdist's workers inherit the controller's
    environment, where the flags are already set).
    """
    if all(flag.split("=")[0] in flags for flag in SUITE_FLAGS):
        return flags
    missing = [flag for flag in SUITE_FLAGS if flag.split("=")[0] not in flags]
    known = missing if _xla_accepts(flags, missing) else [flag for flag in missing if _xla_accepts(flags, [flag])]
    return " ".join([flags, *known]).strip()


def with_xla_defaults(env: dict[str, str]) -> dict[str, str]:
    """A copy of ``env`` with the suite's flags taken out of ``XLA_FLAGS`` (XLA's defaults for a subprocess)."""
    env = dict(env)
    flags = env.get("XLA_FLAGS", "")
    for flag in SUITE_FLAGS:
        flags = flags.replace(flag, "")
    env["XLA_FLAGS"] = " ".join(flags.split())
    return env


def _xla_accepts(flags: str, extra: list[str]) -> bool:
    """Whether a process with ``XLA_FLAGS=flags + extra`` compiles and runs a program."""
    env = {**os.environ, "XLA_FLAGS": " ".join([flags, *extra]).strip()}
    code = "import jax; jax.jit(lambda x: x + 1)(1.0)"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=300).returncode == 0

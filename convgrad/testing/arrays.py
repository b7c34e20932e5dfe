"""What the checks treat as an array, as floating, and how they lift it to float64; the shared jit cache.

These are the small rules every check shares (``check_vjp``, ``convgrad verify``):
one definition each.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_array(a: Any) -> bool:
    """A JAX or NumPy array (or NumPy scalar): anything with a ``shape`` and a ``dtype``."""
    return hasattr(a, "shape") and hasattr(a, "dtype")


def is_float(a: Any) -> bool:
    """An array of a floating dtype (float16, bfloat16, float32, float64)."""
    return is_array(a) and jnp.issubdtype(a.dtype, jnp.floating)


def float64_available() -> bool:
    """Whether the default backend computes in float64 (every backend but TPU)."""
    return jax.default_backend() != "tpu"


def on_device(a: Any) -> jax.Array:
    """``a`` as a JAX array on the default device: ``jnp.asarray`` without its compiled copy.

    ``jnp.asarray`` of a NumPy array compiles (and caches per shape) a small
    program; the checks lift thousands of shapes, each once, so they use
    ``jax.device_put``, which only transfers. JAX arrays pass through; Python
    scalars and lists go through ``jnp.asarray`` (scalars stay weakly typed).
    """
    if isinstance(a, (np.ndarray, np.generic)):
        return jax.device_put(a)
    return jnp.asarray(a)


def as_float64(a: Any) -> Any:
    """A floating array as a float64 JAX array (call it under ``jax.enable_x64(True)``); anything else unchanged."""
    if is_float(a):
        return on_device(np.asarray(a, np.float64))
    return a


def replace_at(values: Sequence[Any], positions: Sequence[int], replacements: Sequence[Any]) -> tuple[Any, ...]:
    """``values`` as a tuple with ``values[positions[k]] = replacements[k]``."""
    values = list(values)
    for position, replacement in zip(positions, replacements):
        values[position] = replacement
    return tuple(values)


# The checks' instruments, the programs that measure rather than stand under test (the float64
# references and their autodiff, the finite differences), compile on CPU with XLA's backend (LLVM)
# optimizations off and with its older loop emitters in place of the fusion emitters: a fraction
# of the compile time of these small programs, which is most of a check's time. The operations
# are the same (XLA:CPU's fast-math stays off) and their results move by rounding at most
# (measured in docs/performance.md). check_vjp compiles the programs under test (the VJP,
# vmapped, its own VJP) with XLA's defaults unless given compiler_options; convgrad verify gives
# it these (``--xla-defaults`` does not). An option this XLA does not know is dropped.
FAST_COMPILE_OPTIONS = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def fast_compile_options(platform: str | None = None) -> dict[str, Any]:
    """:data:`FAST_COMPILE_OPTIONS` that this XLA accepts, on CPU (``platform``, default JAX's); ``{}`` elsewhere."""
    return dict(_known_fast_compile_options()) if (platform or jax.default_backend()) == "cpu" else {}


def instrument_jit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``jax.jit(fn)`` for a measuring program, compiled with :func:`fast_compile_options`."""
    return jax.jit(fn, compiler_options=fast_compile_options() or None)


def program_jit(fn: Callable[..., Any], options: tuple[tuple[str, Any], ...] = ()) -> Callable[..., Any]:
    """``jax.jit(fn)`` for a program under test, compiled with ``options`` (:func:`frozen_options`; ``()``: XLA's)."""
    return jax.jit(fn, compiler_options=dict(options) or None)


def frozen_options(options: Any, where: str) -> tuple[tuple[str, Any], ...]:
    """XLA compile options (a mapping of names to bools, ints, floats or strings, or ``None``) as sorted pairs.

    Hashable, so the compiled programs can be cached per options. Raises
    ``TypeError`` naming ``where`` for anything else.
    """
    if options is None:
        return ()
    if not isinstance(options, Mapping) or not all(
        isinstance(k, str) and isinstance(v, (bool, int, float, str)) for k, v in options.items()
    ):
        raise TypeError(
            f"{where}: compiler_options={options!r}; expected a mapping of XLA option names to bools, ints, floats "
            "or strings, or None"
        )
    return tuple(sorted(options.items()))


@functools.cache
def _known_fast_compile_options() -> tuple[tuple[str, Any], ...]:
    """The options of :data:`FAST_COMPILE_OPTIONS` this XLA accepts (each tried on a one-element program)."""
    known = []
    for name, value in FAST_COMPILE_OPTIONS.items():
        try:
            jax.jit(jnp.negative, compiler_options={name: value}).lower(np.float32(0)).compile()
        except jax.errors.JaxRuntimeError:
            continue
        known.append((name, value))
    return tuple(known)


@functools.lru_cache(maxsize=1024)
def jitted(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``jax.jit(fn)``, cached per function so that repeated checks share compilations."""
    return jax.jit(fn)

"""Check any VJP: against an autodiff reference, against finite differences, and by the adjoint identity.

Use these from your own pytest suite on your own ``jax.custom_vjp`` functions::

    from convgrad.testing import check_vjp

    def test_my_op():
        check_vjp(my_op, (x, w), reference=my_op_in_plain_jax)

:func:`check_vjp` raises ``AssertionError`` naming the argument, the check and
the errors when a gradient is wrong, and returns a :class:`VJPCheck` record when
all is well. All comparisons are normwise: ``max|actual - expected| <= atol +
rtol * max|expected|``, with ``rtol``/``atol`` from :data:`TOLERANCES` for the
dtype under test unless given.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Normwise tolerances for one dtype: ``max|a - e| <= atol + rtol * max|e|``."""

    rtol: float
    atol: float
    why: str


# One place for every tolerance. ``eps`` is the dtype's machine epsilon (spacing
# of floats at 1). Reductions in these ops are at most a few thousand terms, and
# errors of rounded sums grow like sqrt(terms) * eps in practice; each rtol
# allows about 100 eps for float32/float64 and about 10 eps for the 16-bit types,
# whose outputs are themselves rounded to eps / 2. The references run in float64
# on the same (rounded) inputs, so these bound the error of the dtype under test
# alone. A wrong gradient (a missing flip, a mean for a sum) is off by O(1).
TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(rtol=1e-12, atol=1e-14, why="eps 2.2e-16; ~4500 eps"),
    "float32": Tolerance(rtol=2e-5, atol=2e-7, why="eps 1.2e-7; ~170 eps"),
    "float16": Tolerance(rtol=1e-2, atol=1e-4, why="eps 9.8e-4; ~10 eps"),
    "bfloat16": Tolerance(rtol=8e-2, atol=8e-4, why="eps 7.8e-3; ~10 eps"),
}

# Central differences f(x + h u) - f(x - h u) over 2 h in float64, h = eps^(1/3)
# times the scale of x: truncation h^2 |f'''| and rounding eps |f| / h are both
# about 4e-11 relative, so 1e-6 leaves room for curvature. Where the function is
# affine in the argument (``linear_argnums``) the difference is exact and the
# step is 1, so the dtype's own tolerance applies.
NUMERICAL_RTOL = 1e-6


def tolerance_for(dtype: Any) -> Tolerance:
    """The :data:`TOLERANCES` entry for a floating ``dtype``."""
    name = jnp.dtype(dtype).name
    if name not in TOLERANCES:
        raise TypeError(f"tolerance_for: no tolerance for dtype={name}; floating dtypes only: {sorted(TOLERANCES)}")
    return TOLERANCES[name]


@dataclasses.dataclass(frozen=True)
class ArgumentCheck:
    """Errors of one argument's VJP: normwise relative error vs the reference, relative error vs finite differences."""

    argnum: int
    name: str
    dtype: str
    reference_error: float | None
    numerical_error: float | None


@dataclasses.dataclass(frozen=True)
class VJPCheck:
    """What :func:`check_vjp` measured when every check passed."""

    forward_error: float | None
    arguments: tuple[ArgumentCheck, ...]

    @property
    def max_reference_error(self) -> float | None:
        return _max_or_none(a.reference_error for a in self.arguments)

    @property
    def max_numerical_error(self) -> float | None:
        return _max_or_none(a.numerical_error for a in self.arguments)


@dataclasses.dataclass(frozen=True)
class AdjointCheck:
    """``<f(x), y>`` and ``<x, f_t(y)>`` and their relative difference (scaled by the Cauchy-Schwarz bound)."""

    forward_inner: float
    transpose_inner: float
    error: float


def check_vjp(
    fn: Callable[..., Any],
    args: Sequence[Any],
    *,
    reference: Callable[..., Any] | None = None,
    argnums: int | Sequence[int] | None = None,
    cotangent: Any = None,
    rtol: float | None = None,
    atol: float | None = None,
    numerical: bool = True,
    seed: int = 0,
    linear_argnums: Sequence[int] = (),
) -> VJPCheck:
    """Check ``jax.vjp(fn)`` against ``jax.vjp(reference)`` and against finite differences of ``fn``.

    Args:
      fn: the function under test, typically a ``jax.custom_vjp`` one. Its
        outputs may be a pytree; integer outputs (indices) get ``float0``
        cotangents and take no part in the checks.
      args: positional arguments of ``fn``.
      reference: a function computing the same values by other means (plain
        JAX ops). It is evaluated, and differentiated by ``jax.vjp``, in float64
        when float64 is available (not on TPU), on the same inputs.
      argnums: the arguments to differentiate; default every floating one.
      cotangent: the output cotangent; default standard normal of the output's
        structure, rounded to its dtype.
      rtol, atol: override :data:`TOLERANCES` for the dtype under test.
      numerical: also compare ``<cotangent, J u>`` by central differences of
        ``fn`` (in float64 when available) with ``<vjp(cotangent), u>`` for a
        random direction ``u`` per argument.
      seed: seeds the cotangent and the directions.
      linear_argnums: arguments in which ``fn`` is affine; their finite
        differences take a unit step and are exact.

    Returns:
      A :class:`VJPCheck` with the measured errors.

    Raises:
      AssertionError: naming the argument, the check that failed, the max
        absolute and relative errors and the tolerance.
    """
    args = tuple(args)
    names = _argument_names(fn, len(args))
    if argnums is None:
        argnums = tuple(i for i, a in enumerate(args) if _is_float(a))
    elif isinstance(argnums, int):
        argnums = (argnums,)
    argnums = tuple(argnums)
    if not argnums:
        raise ValueError("check_vjp: no floating argument to differentiate; pass argnums")
    for i in argnums:
        if not _is_float(args[i]):
            raise TypeError(f"check_vjp: argument {i} ({names[i]}) is not a floating array; argnums={argnums}")
    rng = np.random.default_rng(seed)
    args = tuple(jnp.asarray(a) if _is_array(a) else a for a in args)

    if cotangent is None:
        cotangent = jax.tree.map(lambda y: _random_like(rng, y), jax.eval_shape(fn, *args))
    outputs, grads = jitted_vjp(fn, argnums)(args, cotangent)

    wide = _float64_available()
    forward_error = None
    reference_grads = [None] * len(argnums)
    if reference is not None:
        with jax.enable_x64(wide):
            wide_args = tuple(_widen(a) if wide else a for a in args)
            ref_out, ref_grads = jitted_vjp(reference, argnums)(wide_args, jax.tree.map(_widen, cotangent))
            reference_grads = [np.asarray(g, np.float64) for g in ref_grads]
            forward_error = assert_close(
                outputs, ref_out, rtol=rtol, atol=atol, what="check_vjp: forward value: fn(*args) vs reference(*args)"
            )

    numerical_grads = [None] * len(argnums)
    if numerical:
        numerical_grads = _directional_checks(
            fn, args, argnums, names, cotangent, grads, rng, wide, linear_argnums, rtol
        )

    checks = []
    for position, i in enumerate(argnums):
        ref_error = None
        if reference_grads[position] is not None:
            ref_error = assert_close(
                grads[position],
                reference_grads[position],
                rtol=rtol,
                atol=atol,
                what=f"check_vjp: argument {i} ({names[i]}): VJP vs jax.vjp(reference)",
            )
        checks.append(ArgumentCheck(i, names[i], jnp.dtype(args[i].dtype).name, ref_error, numerical_grads[position]))
    return VJPCheck(forward_error, tuple(checks))


def check_adjoint(
    f: Callable[[jax.Array], Any],
    f_t: Callable[[Any], jax.Array],
    x_shape: Sequence[int],
    y_shape: Sequence[int],
    *,
    dtype: Any = jnp.float32,
    rtol: float | None = None,
    seed: int = 0,
) -> AdjointCheck:
    """The dot-product test of a linear map ``f`` and its claimed transpose ``f_t``: ``<f(x), y> == <x, f_t(y)>``.

    ``x`` and ``y`` are standard normal of ``x_shape`` / ``y_shape`` in ``dtype``;
    the inner products are taken in float64 and their difference is scaled by
    ``||f(x)|| ||y|| + ||x|| ||f_t(y)||`` (the Cauchy-Schwarz bound).

    Raises:
      AssertionError: when the relative difference exceeds ``rtol`` (default
        the dtype's :data:`TOLERANCES` entry).
    """
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal(tuple(x_shape)), dtype)
    y = jnp.asarray(rng.standard_normal(tuple(y_shape)), dtype)
    fx, fty = np.asarray(f(x), np.float64), np.asarray(f_t(y), np.float64)
    if fx.shape != tuple(y_shape) or fty.shape != tuple(x_shape):
        raise AssertionError(
            f"check_adjoint: shapes do not match: f(x).shape={fx.shape} vs y_shape={tuple(y_shape)}, "
            f"f_t(y).shape={fty.shape} vs x_shape={tuple(x_shape)}"
        )
    xs, ys = np.asarray(x, np.float64), np.asarray(y, np.float64)
    forward_inner, transpose_inner = float(np.vdot(fx, ys)), float(np.vdot(xs, fty))
    scale = np.linalg.norm(fx) * np.linalg.norm(ys) + np.linalg.norm(xs) * np.linalg.norm(fty)
    error = abs(forward_inner - transpose_inner) / scale if scale else abs(forward_inner - transpose_inner)
    limit = tolerance_for(dtype).rtol if rtol is None else rtol
    if not error <= limit:
        raise AssertionError(
            f"check_adjoint: <f(x), y> = {forward_inner:.10g} but <x, f_t(y)> = {transpose_inner:.10g}: "
            f"relative difference {error:.3g} > rtol {limit:.3g} (dtype {jnp.dtype(dtype).name})"
        )
    return AdjointCheck(forward_inner, transpose_inner, error)


def _directional_checks(fn, args, argnums, names, cotangent, grads, rng, wide, linear_argnums, rtol):
    """``<ct, (f(x + h u) - f(x - h u)) / 2h>`` vs ``<vjp(ct), u>``, one argument at a time."""
    errors = []
    evaluate = _jitted(fn)
    with jax.enable_x64(wide):
        base = tuple(_widen(a) if wide else a for a in args)
        ct = [np.asarray(c, np.float64) for c in jax.tree.leaves(cotangent) if _is_float(c)]
        for position, i in enumerate(argnums):
            u = rng.standard_normal(args[i].shape)
            linear = i in linear_argnums
            dtype = jnp.dtype(base[i].dtype)
            eps = float(jnp.finfo(dtype).eps)
            scale = float(np.max(np.abs(np.asarray(base[i], np.float64)), initial=0.0))  # 0 for an empty argument
            h = 1.0 if linear else eps ** (1 / 3) * max(1.0, scale)
            point = np.asarray(base[i])
            plus_point, minus_point = (np.asarray(point + h * u, dtype), np.asarray(point - h * u, dtype))
            plus = evaluate(*_replace(base, (i,), (jnp.asarray(plus_point),)))
            minus = evaluate(*_replace(base, (i,), (jnp.asarray(minus_point),)))
            # the direction actually taken, after rounding to the dtype
            realized = (plus_point.astype(np.float64) - minus_point.astype(np.float64)) / (2 * h)
            jvp = [
                (np.asarray(p, np.float64) - np.asarray(m, np.float64)) / (2 * h)
                for p, m in zip(jax.tree.leaves(plus), jax.tree.leaves(minus))
                if _is_float(p)
            ]
            numerical = sum(float(np.vdot(c, d)) for c, d in zip(ct, jvp))
            grad = np.asarray(grads[position], np.float64)
            analytic = float(np.vdot(grad, realized))
            scale = max(
                np.sqrt(sum(np.vdot(c, c) for c in ct)) * np.sqrt(sum(np.vdot(d, d) for d in jvp)),
                np.linalg.norm(grad) * np.linalg.norm(realized),
            )
            error = abs(numerical - analytic) / scale if scale else abs(numerical - analytic)
            tested = tolerance_for(args[i].dtype).rtol
            limit = (
                rtol
                if rtol is not None
                else (
                    max(tested, tolerance_for(dtype).rtol) if linear else max(tested, NUMERICAL_RTOL if wide else 1e-2)
                )
            )
            if not error <= limit:
                raise AssertionError(
                    f"check_vjp: argument {i} ({names[i]}): VJP vs central finite differences: "
                    f"<vjp(ct), u> = {analytic:.10g} but <ct, J u> = {numerical:.10g} (step {h:.3g}); "
                    f"relative error {error:.3g} > rtol {limit:.3g} (dtype {jnp.dtype(args[i].dtype).name})"
                )
            errors.append(error)
    return errors


def assert_close(
    actual: Any, expected: Any, *, rtol: float | None = None, atol: float | None = None, what: str = "values"
) -> float:
    """Normwise comparison of the floating leaves of two pytrees (``actual``'s dtype sets the tolerance).

    Passes when ``max|actual - expected| <= atol + rtol * max|expected|`` for
    every leaf and NaNs sit in the same places; returns the largest relative
    error ``max|actual - expected| / (max|expected| + atol / rtol)``, which is
    at most ``rtol`` exactly when the comparison passes (the ``atol / rtol``
    floor keeps an expected value of ~0 from reading as a large error).

    Raises:
      AssertionError: naming ``what``, with the max absolute and relative errors.
    """
    actual_leaves = [a for a in jax.tree.leaves(actual) if _is_float(a)]
    expected_leaves = [e for e in map(np.asarray, jax.tree.leaves(expected)) if jnp.issubdtype(e.dtype, jnp.floating)]
    if len(actual_leaves) != len(expected_leaves):
        raise AssertionError(f"{what}: {len(actual_leaves)} arrays vs {len(expected_leaves)} expected")
    worst = 0.0
    for a, e in zip(actual_leaves, expected_leaves):
        tol = tolerance_for(a.dtype)
        r = tol.rtol if rtol is None else rtol
        t = tol.atol if atol is None else atol
        a64, e64 = np.asarray(a, np.float64), np.asarray(e, np.float64)
        if a64.shape != e64.shape:
            raise AssertionError(f"{what}: shape {a64.shape} != expected {e64.shape}")
        nan_mismatch = bool(np.any(np.isnan(a64) != np.isnan(e64)))
        a64, e64 = np.nan_to_num(a64, nan=0.0), np.nan_to_num(e64, nan=0.0)
        abs_error = float(np.max(np.abs(a64 - e64), initial=0.0))
        magnitude = float(np.max(np.abs(e64), initial=0.0))
        rel_error = abs_error / (magnitude + t / r) if r > 0 else abs_error
        if nan_mismatch or not abs_error <= t + r * magnitude:
            raise AssertionError(
                f"{what}: max abs error {abs_error:.3g}, max rel error {rel_error:.3g} "
                f"(rtol {r:.3g}, atol {t:.3g}, dtype {jnp.dtype(a.dtype).name})"
                + (" and NaNs differ" if nan_mismatch else "")
            )
        worst = max(worst, rel_error)
    return worst


@functools.lru_cache(maxsize=512)
def jitted_vjp(fn: Callable[..., Any], argnums: tuple[int, ...]) -> Callable[..., Any]:
    """``run(args, cotangent) -> (outputs, grads)``: ``jax.vjp`` of ``fn`` w.r.t. ``argnums``, jit-compiled.

    Integer leaves of ``cotangent`` (for index outputs) are replaced by
    ``float0`` zeros inside the program. Cached per ``(fn, argnums)``, so
    repeated checks of one function share compilations.
    """

    @jax.jit
    def run(args, cotangent):
        out, vjp_fn = jax.vjp(lambda *d: fn(*_replace(args, argnums, d)), *(args[i] for i in argnums))
        cotangent = jax.tree.map(
            lambda c, y: c if _is_float(y) else np.zeros(y.shape, jax.dtypes.float0), cotangent, out
        )
        return out, vjp_fn(cotangent)

    def call(args, cotangent):
        # float0 cannot cross the jit boundary: pass placeholder zeros for index outputs
        cotangent = jax.tree.map(
            lambda c: np.zeros(c.shape, np.int32) if c.dtype == jax.dtypes.float0 else c, cotangent
        )
        return run(tuple(args), cotangent)

    return call


@functools.lru_cache(maxsize=512)
def _jitted(fn):
    return jax.jit(fn)


def _float64_available() -> bool:
    return jax.default_backend() != "tpu"


def _widen(a):
    if _is_float(a):
        return jnp.asarray(np.asarray(a, np.float64))
    return a


def _random_like(rng, y):
    if _is_float(y):
        return jnp.asarray(rng.standard_normal(y.shape), y.dtype)
    return np.zeros(y.shape, jax.dtypes.float0)


def _is_array(a) -> bool:
    return hasattr(a, "shape") and hasattr(a, "dtype")


def _is_float(a) -> bool:
    return _is_array(a) and jnp.issubdtype(a.dtype, jnp.floating)


def _replace(values, positions, replacements):
    values = list(values)
    for p, r in zip(positions, replacements):
        values[p] = r
    return tuple(values)


def _argument_names(fn, n) -> list[str]:
    try:
        params = [
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    return [params[i] if i < len(params) else f"arg{i}" for i in range(n)]


def _max_or_none(values) -> float | None:
    values = [v for v in values if v is not None]
    return max(values) if values else None

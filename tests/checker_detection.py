"""The planted bug of the detection table: one wrong element among 10,000 in a softplus VJP.

``softplus(x)`` over 10,000 standard normal values, cotangent standard normal (seed 0),
whose hand-written VJP multiplies element 1234 of the gradient by ``1 + error``. The
element at 1234 is chosen (by swapping values into place) to be the one whose gradient
has the median magnitude, or the largest. ``docs/checker.md``'s table lists, per dtype
and mode, the smallest ``error`` that :func:`convgrad.testing.check_vjp` detects;
``tests/test_checker_detection.py`` checks each entry. Re-measure it with
``python -m tests.checker_detection [dtypes [modes]]`` (several minutes: the jacobian mode
differentiates all 10,000 elements, twice per bisection step). ``python -m
tests.checker_detection --detects dtype:mode:element:error ...`` answers single queries
(the tests run the jacobian mode's so, in a process with XLA's default flags).
"""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from convgrad.ops.precision import accumulator_dtype
from convgrad.testing import check_vjp

SIZE, INDEX = 10_000, 1234
MODES = ("directions", "jacobian", "reference")
ELEMENTS = ("median", "largest")


def problem(dtype: str, element: str) -> tuple[jax.Array, jax.Array]:
    """``(x, ct)`` in ``dtype``, the element of median or largest gradient magnitude moved to ``INDEX``."""
    rng = np.random.default_rng(0)
    x, ct = rng.standard_normal(SIZE), rng.standard_normal(SIZE)
    order = np.argsort(np.abs(ct / (1 + np.exp(-x))))
    chosen = order[SIZE // 2] if element == "median" else order[-1]
    for values in (x, ct):
        values[[INDEX, chosen]] = values[[chosen, INDEX]]
    return jnp.asarray(x.astype(dtype)), jnp.asarray(ct.astype(dtype))


@jax.custom_vjp
def planted_softplus(x, error):
    """``softplus(x)``, whose VJP is wrong by the relative ``error`` at element ``INDEX``."""
    return jnp.logaddexp(x, 0.0)


def _fwd(x, error):
    return planted_softplus(x, error), (x, error)


def _bwd(saved, g):
    x, error = saved
    exact = (g * jax.nn.sigmoid(x)).astype(accumulator_dtype(x.dtype))
    return (exact * (1 + error * (jnp.arange(x.size) == INDEX))).astype(x.dtype), jnp.zeros_like(error)


planted_softplus.defvjp(_fwd, _bwd)


def check(dtype: str, mode: str, element: str, error: float) -> None:
    """``check_vjp`` of the planted VJP in ``mode`` (``"reference"``: vs ``jax.nn.softplus`` alone)."""
    x, ct = problem(dtype, element)
    planted_error = jnp.asarray(error, accumulator_dtype(x.dtype))
    if mode == "reference":
        options = dict(reference=lambda x, error: jax.nn.softplus(x), numerical=False)
    else:
        options = dict(mode=mode)
    check_vjp(planted_softplus, (x, planted_error), argnums=0, cotangent=ct, **options)


def detects(dtype: str, mode: str, element: str, error: float) -> bool:
    return failure(dtype, mode, element, error) is not None


def failure(dtype: str, mode: str, element: str, error: float) -> str | None:
    """``check_vjp``'s failure message, or ``None`` when the planted error passes."""
    try:
        check(dtype, mode, element, error)
    except AssertionError as message:
        return str(message)
    return None


def threshold(dtype: str, mode: str, element: str, steps: int = 14) -> float:
    """The smallest detected ``error``, by bisection in log space between 1e-15 and 1e4 (to 0.3%)."""
    low, high = 1e-15, 1e4
    if not detects(dtype, mode, element, high) or detects(dtype, mode, element, 0.0):
        raise RuntimeError(f"{dtype} {mode} {element}: no threshold between 0 and {high}")
    for _ in range(steps):
        middle = float(np.sqrt(low * high))
        low, high = (low, middle) if detects(dtype, mode, element, middle) else (middle, high)
    return high


def _answer(queries: list[str]) -> None:
    """``--detects dtype:mode:element:error ...``: one JSON line per query, ``{"message": ... or null}``."""
    for query in queries:
        dtype, mode, element, error = query.split(":")
        print(json.dumps({"query": query, "message": failure(dtype, mode, element, float(error))}), flush=True)


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)
    if sys.argv[1:2] == ["--detects"]:
        _answer(sys.argv[2:])
        sys.exit()
    dtypes = sys.argv[1].split(",") if len(sys.argv) > 1 else ["float32", "float64", "bfloat16", "float16"]
    modes = sys.argv[2].split(",") if len(sys.argv) > 2 else MODES
    for dtype in dtypes:
        for mode in modes:
            cells = [f"{threshold(dtype, mode, element):.2g}" for element in ELEMENTS]
            print(f"| {dtype} | {mode} | {' | '.join(cells)} |", flush=True)

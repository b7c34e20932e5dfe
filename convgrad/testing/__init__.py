"""Check any VJP: against an autodiff reference, against finite differences, and by the adjoint identity.

Use these from your own pytest suite on your own ``jax.custom_vjp`` (or
``jax.custom_jvp``) functions::

    from convgrad.testing import check_vjp

    def test_my_op():
        check_vjp(my_op, (params, x), reference=my_op_in_plain_jax)

:func:`check_vjp` checks every floating leaf of every argument (pytrees
included; Python scalars and strings are static), raises ``AssertionError``
with one block naming the leaf, the check, the worst element's index and
values, the error and the tolerance, and returns a :class:`VJPCheck` record
when all is well. Comparisons are normwise: ``|actual - expected| <= atol +
rtol * max|expected|`` per element, with ``rtol``/``atol`` from
:data:`TOLERANCES` for the dtype under test unless given. ``docs/checker.md``
states what each mode detects and compares the checker with
``torch.autograd.gradcheck`` and ``jax.test_util.check_grads``.

Hypothesis strategies for convolution-like ops are in
:mod:`convgrad.testing.strategies` (which needs the ``hypothesis`` package;
this module does not).

The helpers every check shares live here too, one definition each, and
``convgrad verify`` uses them: :func:`is_array`, :func:`is_float`,
:func:`float64_available`, :func:`as_float64`, :func:`replace_at`,
:func:`jitted`, :func:`jitted_vjp`, :func:`clear_caches`, and
:func:`fast_compile_options` (:data:`FAST_COMPILE_OPTIONS`): how the
instruments compile on CPU, and ``convgrad verify``'s programs under test
unless ``--xla-defaults``.
"""

from __future__ import annotations

from convgrad.testing.adjoint import AdjointCheck, check_adjoint
from convgrad.testing.arrays import (
    FAST_COMPILE_OPTIONS,
    as_float64,
    fast_compile_options,
    float64_available,
    is_array,
    is_float,
    jitted,
    on_device,
    replace_at,
)
from convgrad.testing.compare import assert_close
from convgrad.testing.tolerances import NUMERICAL_RTOL, TOLERANCES, Tolerance, tolerance_for
from convgrad.testing.vjp import (
    JACOBIAN_MAX_COLUMNS,
    JACOBIAN_MAX_ENTRIES,
    LeafCheck,
    VJPCheck,
    check_vjp,
    clear_caches,
    jitted_vjp,
)

__all__ = [
    "FAST_COMPILE_OPTIONS",
    "JACOBIAN_MAX_COLUMNS",
    "JACOBIAN_MAX_ENTRIES",
    "NUMERICAL_RTOL",
    "TOLERANCES",
    "AdjointCheck",
    "LeafCheck",
    "Tolerance",
    "VJPCheck",
    "as_float64",
    "assert_close",
    "check_adjoint",
    "check_vjp",
    "clear_caches",
    "fast_compile_options",
    "float64_available",
    "is_array",
    "is_float",
    "jitted",
    "jitted_vjp",
    "on_device",
    "replace_at",
    "tolerance_for",
]

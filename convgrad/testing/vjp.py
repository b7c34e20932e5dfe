"""``check_vjp``: a function's VJP against an autodiff reference and against finite differences, leaf by leaf.

The checks, per differentiated leaf (see :mod:`convgrad.testing.layout` for which leaves):

- **reference**: the VJP vs ``jax.vjp(reference)``, run in float64 on the same inputs;
  elementwise, normwise tolerance of the dtype under test.
- **finite differences**, ``mode="directions"`` (default): for ``directions`` random
  directions ``u`` per leaf, ``<vjp(ct), u>`` vs ``<ct, (f(x + h u) - f(x - h u)) / 2h>``
  with ``f`` run in float64 on the inputs cast to float64. On a failure the leaf is localized by
  ``mode="jacobian"``'s differences, so the message names the worst element.
- **finite differences**, ``mode="jacobian"``: every element's column of the Jacobian by
  central differences; compared with the whole Jacobian assembled from the VJPs of the
  output basis vectors when it has at most :data:`JACOBIAN_MAX_ENTRIES` entries (as
  ``torch.autograd.gradcheck``'s slow mode), else with the VJP of the cotangent, element
  by element.
- ``check_batched=True``: the VJP under ``jax.vmap`` over a batch of problems vs each alone.
- ``order=2``: the same checks applied to the VJP itself, ``x -> vjp(ct)``: its VJP
  (reverse over reverse) against the reference's and against finite differences of the VJP.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from convgrad.ops.precision import accumulator_dtype
from convgrad.testing import finite_differences
from convgrad.testing.arrays import (
    as_float64,
    float64_available,
    frozen_options,
    instrument_jit,
    is_float,
    on_device,
    program_jit,
)
from convgrad.testing.compare import assert_close, mismatch_report, relative_error
from convgrad.testing.layout import flat_function, layout_of
from convgrad.testing.tolerances import (
    NUMERICAL_RTOL,
    NUMERICAL_RTOL_FLOAT32,
    TOLERANCES,
    tolerance_for,
)

# mode="jacobian" differentiates leaves of at most this many elements (2 evaluations of
# the function each), and compares the whole Jacobian when it has at most this many entries.
JACOBIAN_MAX_COLUMNS = 2**15
JACOBIAN_MAX_ENTRIES = 2**22
# a directional failure is localized element by element up to this many elements, by bisection beyond
LOCALIZE_MAX_COLUMNS = 2**11
MODES = ("directions", "jacobian")


@dataclasses.dataclass(frozen=True)
class LeafCheck:
    """Errors of one differentiated leaf's VJP: normwise relative error vs the reference and vs finite differences."""

    argnum: int
    path: str
    dtype: str
    shape: tuple[int, ...]
    reference_error: float | None
    numerical_error: float | None


@dataclasses.dataclass(frozen=True)
class VJPCheck:
    """What :func:`check_vjp` measured when every check passed.

    ``second_order`` is the same record for the VJP's own VJP (``order=2``);
    ``batched_error`` the largest error of the VJP under ``jax.vmap`` vs alone.
    """

    forward_error: float | None
    leaves: tuple[LeafCheck, ...]
    mode: str
    batched_error: float | None = None
    second_order: VJPCheck | None = None

    @property
    def max_reference_error(self) -> float | None:
        return _max_or_none(leaf.reference_error for leaf in self.leaves)

    @property
    def max_numerical_error(self) -> float | None:
        return _max_or_none(leaf.numerical_error for leaf in self.leaves)


def check_vjp(
    fn: Callable[..., Any],
    args: Sequence[Any],
    *,
    reference: Callable[..., Any] | None = None,
    argnums: int | Sequence[int] | None = None,
    static_argnums: int | Sequence[int] = (),
    cotangent: Any = None,
    rtol: float | None = None,
    atol: float | None = None,
    numerical: bool = True,
    mode: str = "directions",
    directions: int = 4,
    linear_argnums: Sequence[int] = (),
    check_batched: bool = False,
    batch_args: Sequence[Sequence[Any]] | None = None,
    order: int = 1,
    second_order_numerical: bool = True,
    seed: int = 0,
    compiler_options: Mapping[str, Any] | None = None,
) -> VJPCheck:
    """Check ``jax.vjp(fn)`` on every floating leaf of its arguments: vs ``jax.vjp(reference)`` and finite differences.

    Args:
      fn: the function under test: a ``jax.custom_vjp`` or ``jax.custom_jvp``
        function, or any JAX-traceable one. Its outputs may be a pytree; integer
        and boolean outputs (indices) get ``float0`` cotangents and take no part.
      args: positional arguments of ``fn``: arrays, pytrees of arrays, and static
        values (Python scalars, strings, ``None``, other objects), which are
        closed over and never traced.
      reference: a function computing the same values by other means (plain JAX
        ops). It is evaluated, and differentiated by ``jax.vjp``, in float64 (when
        the backend has it, i.e. not on TPU), on the same inputs cast to float64.
      argnums: the arguments to differentiate, whole: every floating leaf of each.
        Default: every argument with a floating leaf.
      static_argnums: arguments to close over even where they hold arrays.
      cotangent: the output cotangent (a pytree like the output); default
        standard normal, rounded to each output's dtype.
      rtol, atol: override :data:`TOLERANCES` for the dtype under test.
      numerical: compare with central finite differences of ``fn`` (in float64).
      mode: ``"directions"``: ``directions`` random directions per leaf, the
        differences of all of them in one compiled program; ``"jacobian"``: every
        element of every leaf (leaves of at most :data:`JACOBIAN_MAX_COLUMNS`
        elements), the whole Jacobian when it has at most
        :data:`JACOBIAN_MAX_ENTRIES` entries.
      directions: the number of random directions per leaf in ``"directions"`` mode.
      linear_argnums: arguments in which ``fn`` is affine: their differences
        take a unit step and are exact.
      check_batched: also run the VJP under ``jax.vmap`` over a batch of problems
        (``args`` and ``batch_args``) and compare with each problem alone.
      batch_args: the other problems of the batch, each an argument tuple like
        ``args``; default one, with each differentiated leaf scaled elementwise
        by a random factor in [0.9, 1.1] (so signs, and zeros, are kept).
      order: 2 also checks the VJP of the VJP (``x -> vjp(ct)``) the same way:
        against the reference's and against finite differences of the VJP.
      second_order_numerical: with ``order=2``, the finite differences of the
        VJP (one more compiled program); ``False`` keeps only the comparison
        with the reference's grad-of-grad.
      seed: seeds the cotangents, directions and batch.
      compiler_options: XLA compile options for the programs under test (the
        VJP, vmapped, and its own VJP), as ``jax.jit``'s ``compiler_options``;
        default XLA's. The instruments (the reference, the finite differences)
        compile with :func:`~convgrad.testing.arrays.fast_compile_options`
        whatever this says. ``convgrad verify`` passes those here too.

    Returns:
      A :class:`VJPCheck` with the measured errors.

    Raises:
      AssertionError: one block naming the leaf (``argument 0 (params['b'])``),
        the check, the worst element's index with its expected and actual
        values, the error and the tolerance.
      ValueError, TypeError: for arguments of ``check_vjp`` itself that make no
        sense (an unknown mode, an argument number out of range, nothing to
        differentiate, nothing to compare with).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from convgrad.testing import check_vjp
      >>> def loss(params, x, scale):
      ...     return scale * jnp.sum(jnp.tanh(x @ params["w"] + params["b"]))
      >>> params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
      >>> record = check_vjp(loss, (params, jnp.linspace(-1.0, 1.0, 3), 2.0))
      >>> [leaf.path for leaf in record.leaves]
      ["params['b']", "params['w']", 'x']
    """
    if mode not in MODES:
        raise ValueError(f"check_vjp: mode={mode!r}; expected one of {MODES}")
    if not isinstance(directions, int) or directions < 1:
        raise ValueError(f"check_vjp: directions={directions!r}; expected a positive int")
    if order not in (1, 2):
        raise ValueError(f"check_vjp: order={order!r}; expected 1 or 2")
    if reference is None and not numerical and not check_batched:
        raise ValueError(
            "check_vjp: reference=None and numerical=False compare the VJP with nothing; "
            "pass reference=, numerical=True or check_batched=True"
        )
    args = tuple(args)
    layout = layout_of(fn, args, argnums, static_argnums)
    linear_argnums = {i % len(args) for i in linear_argnums}
    differentiated, carried = layout.split(args)
    problem = _Problem(
        fn=flat_function(fn, layout),
        reference=None if reference is None else flat_function(reference, layout),
        labels=tuple(
            f"argument {a} ({p})" for a, p in zip(layout.differentiated_arguments, layout.differentiated_paths)
        ),
        argnums=layout.differentiated_arguments,
        paths=layout.differentiated_paths,
        linear=tuple(a in linear_argnums for a in layout.differentiated_arguments),
        options=frozen_options(compiler_options, "check_vjp"),
    )
    rng = np.random.default_rng(seed)
    out_shape = jax.eval_shape(problem.fn, differentiated, carried)
    if not any(is_float(leaf) for leaf in jax.tree.leaves(out_shape)):
        raise ValueError("check_vjp: fn has no floating output to differentiate")
    cotangent = _random_cotangent(rng, out_shape) if cotangent is None else _placeholders(cotangent)
    options = _Options(rtol, atol, numerical, mode, directions)
    # order 2: both orders' values come from one program of the VJP and its own VJP (the first
    # order's with a zero second cotangent), which compiles in about the time of the second alone
    runs = _first_order_runs(problem) if order == 2 else _Runs.of(problem)
    record, _ = _check(problem, differentiated, carried, cotangent, rng, options, runs, prefix="check_vjp")

    if check_batched:
        problems = [(differentiated, carried, cotangent)]
        if batch_args is None:
            problems.append((_jittered(rng, differentiated), carried, _random_cotangent(rng, out_shape)))
        else:
            for extra in batch_args:
                extra_differentiated, extra_carried = layout.split(tuple(extra))
                problems.append((extra_differentiated, extra_carried, _random_cotangent(rng, out_shape)))
        record = dataclasses.replace(record, batched_error=_batched_check(problem, problems, options, runs.run))

    if order == 2:
        second = _second_order_problem(problem)
        gradient_shape = jax.eval_shape(second.fn, differentiated, (carried, cotangent))
        second_record, _ = _check(
            second,
            differentiated,
            (carried, cotangent),
            _random_cotangent(rng, gradient_shape),
            rng,
            dataclasses.replace(options, numerical=options.numerical and second_order_numerical),
            _second_order_runs(problem),
            prefix="check_vjp, order 2 (the VJP of x -> vjp(ct))",
        )
        record = dataclasses.replace(record, second_order=second_record)
    return record


def jitted_vjp(
    fn: Callable[..., Any],
    argnums: tuple[int, ...],
    *,
    second_order: bool = False,
    compiler_options: Mapping[str, Any] | None = None,
) -> Callable[..., Any]:
    """``run(args, cotangent) -> (outputs, grads)``: ``jax.vjp`` of ``fn`` w.r.t. ``argnums``, jit-compiled.

    ``grads`` holds one gradient pytree per argument of ``argnums``. Array
    leaves of ``args`` are traced, other values closed over. Integer leaves of
    ``cotangent`` (for index outputs) are replaced by ``float0`` zeros inside
    the program. Cached per ``(fn, argnums, compiler_options)`` and argument
    structure, so repeated checks of one function share compilations (with
    :func:`check_vjp`'s too, given the same ``compiler_options``).
    ``second_order=True`` runs the program :func:`check_vjp` compiles for
    ``order=2`` (:func:`second_order_program`, with a zero second cotangent):
    the same values up to XLA's fusion choices (bitwise in the cases measured), and no
    compilation after such a check at these shapes.
    """
    return _jitted_vjp(fn, tuple(argnums), second_order, frozen_options(compiler_options, "jitted_vjp"))


@functools.lru_cache(maxsize=512)
def _jitted_vjp(fn, argnums, second_order, options):
    def call(args, cotangent):
        args = tuple(args)
        layout = layout_of(fn, args, argnums)
        differentiated, carried = layout.split(args)
        flat = flat_function(fn, layout)
        program = (
            _through_second_order(second_order_program(flat, options)) if second_order else vjp_program(flat, options)
        )
        outputs, grads = program(differentiated, carried, _placeholders(cotangent))
        return outputs, layout.gradients_by_argument(grads, argnums, args)

    return call


@functools.lru_cache(maxsize=1024)
def vjp_program(flat: finite_differences.Flat, options: tuple = ()) -> Callable[..., Any]:
    """``run(differentiated, carried, cotangent) -> (outputs, grads)``, jit-compiled; ``grads`` one per leaf.

    ``options``: XLA compile options as sorted pairs (:func:`~convgrad.testing.arrays.frozen_options`).
    """
    return program_jit(_vjp(flat), options)


@functools.lru_cache(maxsize=1024)
def reference_program(flat: finite_differences.Flat) -> Callable[..., Any]:
    """:func:`vjp_program` of a reference: an instrument (:func:`~convgrad.testing.arrays.instrument_jit`)."""
    return instrument_jit(_vjp(flat))


@functools.lru_cache(maxsize=1024)
def second_order_program(flat: finite_differences.Flat, options: tuple = ()) -> Callable[..., Any]:
    """``run(differentiated, carried, cotangent, second_cotangent) -> (outputs, grads, second_grads)``, jit-compiled.

    The VJP and the VJP's own VJP in one program: ``second_grads`` is the VJP of
    ``x -> grads`` (the map :func:`check_vjp` checks at ``order=2``) for
    ``second_cotangent``, one per leaf like ``grads``. The forward and the VJP
    are traced once and feed both, so it compiles in about the time of the
    second-order program alone, a third to two fifths less than the two apart
    (docs/performance.md, "What convgrad verify and the tests cost"). ``options``
    as :func:`vjp_program`'s.
    """
    return program_jit(_vjp_of_vjp(flat), options)


@functools.lru_cache(maxsize=1024)
def reference_second_order_program(flat: finite_differences.Flat) -> Callable[..., Any]:
    """:func:`second_order_program` of a reference: an instrument (:func:`~convgrad.testing.arrays.instrument_jit`)."""
    return instrument_jit(_vjp_of_vjp(flat))


def clear_caches() -> None:
    """Drop the compiled programs the checks hold (after monkeypatching an op, say)."""
    from convgrad.testing import arrays, layout

    for cached in (
        _jitted_vjp,
        vjp_program,
        reference_program,
        second_order_program,
        reference_second_order_program,
        _batched_program,
        _rows_program,
        _second_order_function,
        layout.flat_function,
        arrays.jitted,
        finite_differences.forward_program,
        finite_differences.columns_program,
    ):
        cached.cache_clear()


# ---------------------------------------------------------------------------- the checks of one order


@dataclasses.dataclass(frozen=True)
class _Problem:
    """A function of flat leaves, its reference, and what to call and how to difference each leaf."""

    fn: finite_differences.Flat
    reference: finite_differences.Flat | None
    labels: tuple[str, ...]
    argnums: tuple[int, ...]
    paths: tuple[str, ...]
    linear: tuple[bool, ...]
    options: tuple = ()  # XLA compile options of fn's programs (frozen_options); () for XLA's defaults


@dataclasses.dataclass(frozen=True)
class _Options:
    rtol: float | None
    atol: float | None
    numerical: bool
    mode: str
    directions: int

    def tolerance(self, dtype: Any) -> tuple[float, float]:
        tolerance = tolerance_for(dtype)
        return (
            tolerance.rtol if self.rtol is None else self.rtol,
            tolerance.atol if self.atol is None else self.atol,
        )


@dataclasses.dataclass(frozen=True)
class _Runs:
    """The programs one order's checks call, for ``fn`` and for its reference.

    Each is ``run(differentiated, carried, cotangent) -> (outputs, grads)``.
    """

    run: Callable[..., Any]
    reference: Callable[..., Any] | None

    @classmethod
    def of(cls, problem: _Problem) -> _Runs:
        """The first order's VJP programs alone (:func:`vjp_program`, :func:`reference_program`)."""
        return cls(
            vjp_program(problem.fn, problem.options),
            None if problem.reference is None else reference_program(problem.reference),
        )


def _first_order_runs(problem: _Problem) -> _Runs:
    """The first order from the programs of both orders (:func:`second_order_program`), with a zero second cotangent."""
    return _Runs(
        _through_second_order(second_order_program(problem.fn, problem.options)),
        None if problem.reference is None else _through_second_order(reference_second_order_program(problem.reference)),
    )


def _second_order_runs(problem: _Problem) -> _Runs:
    """The second order (the VJP of ``x -> vjp(ct)``, carried ``(carried, ct)``) from the programs of both orders."""

    def through(program):
        def run(differentiated, carried_and_cotangent, second_cotangent):
            carried, cotangent = carried_and_cotangent
            _, grads, second_grads = program(differentiated, carried, cotangent, second_cotangent)
            return grads, second_grads

        return run

    return _Runs(
        through(second_order_program(problem.fn, problem.options)),
        None if problem.reference is None else through(reference_second_order_program(problem.reference)),
    )


def _through_second_order(program):
    """``run(differentiated, carried, cotangent) -> (outputs, grads)`` from a program of both orders.

    The second cotangent is zero: its value does not reach ``outputs`` or ``grads``.
    """

    def run(differentiated, carried, cotangent):
        zeros = tuple(np.zeros(leaf.shape, leaf.dtype) for leaf in differentiated)
        outputs, grads, _ = program(differentiated, carried, cotangent, zeros)
        return outputs, grads

    return run


def _check(problem, differentiated, carried, cotangent, rng, options, runs, *, prefix) -> tuple[VJPCheck, tuple]:
    """The reference and finite-difference checks of one function, run by ``runs``; returns the record and the VJP."""
    outputs, grads = runs.run(differentiated, carried, _placeholders(cotangent))
    x64 = float64_available()
    forward_error = None
    reference_errors: list[float | None] = [None] * len(differentiated)
    if problem.reference is not None:
        with jax.enable_x64(x64):
            inputs = _in_reference_precision(x64, (differentiated, carried, cotangent))
            reference_outputs, reference_grads = runs.reference(inputs[0], inputs[1], _placeholders(inputs[2]))
            forward_error = assert_close(
                outputs,
                reference_outputs,
                rtol=options.rtol,
                atol=options.atol,
                what=f"{prefix}: forward value: fn(*args) vs reference(*args)",
            )
            for position, (grad, expected) in enumerate(zip(grads, reference_grads)):
                reference_errors[position] = assert_close(
                    grad,
                    np.asarray(expected, np.float64),
                    rtol=options.rtol,
                    atol=options.atol,
                    what=f"{prefix}: {problem.labels[position]}: VJP vs jax.vjp(reference)",
                )

    numerical_errors: list[float | None] = [None] * len(differentiated)
    if options.numerical:
        check = _directional_check if options.mode == "directions" else _jacobian_check
        numerical_errors = check(problem, differentiated, carried, cotangent, grads, rng, options, x64, prefix)

    leaves = tuple(
        LeafCheck(
            problem.argnums[position],
            problem.paths[position],
            jnp.dtype(leaf.dtype).name,
            tuple(leaf.shape),
            reference_errors[position],
            numerical_errors[position],
        )
        for position, leaf in enumerate(differentiated)
    )
    return VJPCheck(forward_error, leaves, options.mode), grads


def _directional_check(problem, differentiated, carried, cotangent, grads, rng, options, x64, prefix):
    """``<vjp(ct), u>`` vs ``<ct, J u>`` by central differences, for ``options.directions`` directions per leaf.

    For a leaf of ``n`` elements with VJP ``g`` and a standard normal ``u``,
    ``<g - J^T ct, u>`` is normal with standard deviation ``|g - J^T ct|`` (the
    2-norm of the error), so each direction estimates the error's 2-norm. The
    allowance is the 2-norm normwise tolerance, ``|g - J^T ct| <= rtol |g| +
    atol sqrt(n)``, scaled by ``|u| / sqrt(n)`` (about 1), plus the differences'
    own noise ``nu |ct * J u|`` (``nu``: :data:`NUMERICAL_RTOL`, or float64's
    rtol for affine leaves). The reported error is the difference over ``(|g| +
    sqrt(n) atol / rtol) |u| / sqrt(n)``: an estimate of the VJP's 2-norm relative error.
    """
    count = options.directions
    directions = [rng.standard_normal((count, *leaf.shape)) for leaf in differentiated]
    with jax.enable_x64(x64):
        points, fd_carried, fd_cotangent = _in_reference_precision(x64, (differentiated, carried, cotangent))
        steps = finite_differences.step_sizes(points, problem.linear)
        measured = [
            finite_differences.directional_differences(
                problem.fn, points, fd_carried, fd_cotangent, position, directions[position], steps[position]
            )
            for position in range(len(points))
        ]
    errors = []
    for position, grad in enumerate(grads):
        size = differentiated[position].size
        if size == 0:
            errors.append(0.0)
            continue
        rtol, atol = options.tolerance(differentiated[position].dtype)
        noise = _noise(problem.linear[position], x64)
        g = np.asarray(grad, np.float64).reshape(-1)
        numerical, fd_norms, taken = measured[position]
        u = taken.reshape(count, -1)
        analytic = u @ g
        spread = np.linalg.norm(u, axis=1) / np.sqrt(size)  # |u| / sqrt(n), about 1
        magnitude = float(np.linalg.norm(g))
        allowed = (rtol * magnitude + atol * np.sqrt(size)) * spread + noise * fd_norms
        residual = np.abs(analytic - numerical)
        scale = (magnitude + (np.sqrt(size) * atol / rtol if rtol > 0 else 0.0)) * spread
        relative = np.divide(residual, scale, out=residual.copy(), where=scale > 0)
        if np.any(np.isnan(residual)) or np.any(residual > allowed):
            worst = int(np.argmax(np.where(np.isnan(residual), np.inf, residual - allowed)))
            lines = [
                f"{prefix}: {problem.labels[position]}: VJP vs central finite differences "
                f"({count} random directions u, step h {steps[position]:.3g})",
                f"worst direction {worst + 1} of {count}: <vjp(ct), u> = {analytic[worst]:.10g} but "
                f"<ct, (f(x + h u) - f(x - h u)) / 2h> = {numerical[worst]:.10g}",
                f"difference {residual[worst]:.3g} > allowed {allowed[worst]:.3g} = (rtol {rtol:.3g} * |vjp| "
                f"{magnitude:.3g} + atol {atol:.3g} * sqrt(n) {np.sqrt(size):.3g}) * |u| / sqrt(n) {spread[worst]:.3g} "
                f"+ finite-difference noise {noise:.3g} * |ct * J u| {fd_norms[worst]:.3g} "
                f"(dtype {jnp.dtype(differentiated[position].dtype).name}; |.| the 2-norm)",
                f"relative error {relative[worst]:.3g} > rtol {rtol:.3g} (difference / ((|vjp| + sqrt(n) atol / rtol) "
                f"|u| / sqrt(n)): the VJP's 2-norm relative error, estimated along u)",
                f"|vjp| = {magnitude:.3g}, while the differences put |J^T ct| near "
                f"{np.sqrt(np.mean(numerical**2)):.3g} (the rms of <ct, J u> over the directions)",
                _localize(problem, position, differentiated, carried, cotangent, grad, options, x64, rng),
            ]
            raise AssertionError("\n  ".join(lines))
        errors.append(float(np.max(relative, initial=0.0)))
    return errors


def _localize(problem, position, differentiated, carried, cotangent, grad, options, x64, rng) -> str:
    """Where the failing leaf's VJP is wrong, as the rest of a failure message.

    Up to :data:`LOCALIZE_MAX_COLUMNS` elements: every element by central
    differences (``J^T ct``, as ``mode="jacobian"``), with the count of mismatched
    elements. Beyond: :func:`_bisect`, ``16 log2(n)`` evaluations.
    """
    size = differentiated[position].size
    if size > LOCALIZE_MAX_COLUMNS:
        return _bisect(problem, position, differentiated, carried, cotangent, grad, rng, x64)
    numerical, column_norms = _contracted_columns(problem, differentiated, carried, cotangent, (position,), x64)
    report = _vjp_mismatch(problem, position, differentiated, grad, numerical[0], column_norms[0], options, x64)
    if report is None:
        return (
            "localized by central differences of each element: no single element exceeds the elementwise tolerance "
            "(the error is spread over many elements)"
        )
    return f"localized by central differences of each of its {size} elements (J^T ct): {report.text}"


def _bisect(problem, position, differentiated, carried, cotangent, grad, rng, x64) -> str:
    """The element carrying the most error, by bisection: halve the candidates, keep the half whose directions err more.

    At each step 4 random directions supported on each half (16 evaluations)
    estimate the squared 2-norm of the error there (``<g - J^T ct, v>^2`` has that mean); the
    last candidate's own column gives its expected value. A single wrong element
    is found whenever its error is well above the rounding of the rest.
    """
    count = 4
    leaf = differentiated[position]
    size = leaf.size
    g = np.asarray(grad, np.float64).reshape(-1)
    candidates = np.arange(size)
    with jax.enable_x64(x64):
        points, fd_carried, fd_cotangent = _in_reference_precision(x64, (differentiated, carried, cotangent))
        step = finite_differences.step_sizes(points, problem.linear)[position]
        while candidates.size > 1:
            halves = (candidates[: candidates.size // 2], candidates[candidates.size // 2 :])
            rows = np.zeros((2 * count, size))
            for h, half in enumerate(halves):
                rows[h * count : (h + 1) * count, half] = rng.standard_normal((count, half.size))
            dots, _, taken = finite_differences.directional_differences(
                problem.fn, points, fd_carried, fd_cotangent, position, rows.reshape(2 * count, *leaf.shape), step
            )
            residual = taken.reshape(2 * count, size) @ g - dots
            candidates = halves[int(np.argmax([np.mean(residual[:count] ** 2), np.mean(residual[count:] ** 2)]))]
    element = int(candidates[0])
    dots, _ = _contracted_columns(problem, differentiated, carried, cotangent, (position,), x64, elements=[element])
    expected = float(dots[0][0])
    index = tuple(int(i) for i in np.unravel_index(element, leaf.shape))
    return (
        f"localized by bisection ({size} elements, more than LOCALIZE_MAX_COLUMNS={LOCALIZE_MAX_COLUMNS}): "
        f"the most error sits at index {index}: actual {g[element]:.6g}, expected {expected:.6g} "
        f"(abs error {abs(g[element] - expected):.3g}; expected from that element's central difference)"
    )


def _jacobian_check(problem, differentiated, carried, cotangent, grads, rng, options, x64, prefix):
    """Every element of every leaf by central differences: the whole Jacobian, or ``J^T ct`` element by element."""
    for position, leaf in enumerate(differentiated):
        if leaf.size > JACOBIAN_MAX_COLUMNS:
            raise ValueError(
                f"check_vjp: mode='jacobian': {problem.labels[position]} has {leaf.size} elements, more than "
                f"JACOBIAN_MAX_COLUMNS={JACOBIAN_MAX_COLUMNS}; use mode='directions'"
            )
    out_shape = jax.eval_shape(problem.fn, differentiated, carried)
    outputs = [(jax.tree_util.keystr(path), s) for path, s in jax.tree_util.tree_flatten_with_path(out_shape)[0]]
    outputs = [(path, s) for path, s in outputs if is_float(s)]
    rows = sum(s.size for _, s in outputs)
    columns = sum(leaf.size for leaf in differentiated)
    errors = []
    if rows * columns > JACOBIAN_MAX_ENTRIES:
        numerical, column_norms = _contracted_columns(
            problem, differentiated, carried, cotangent, tuple(range(len(differentiated))), x64
        )
        for position, grad in enumerate(grads):
            report = _vjp_mismatch(
                problem, position, differentiated, grad, numerical[position], column_norms[position], options, x64
            )
            if report is not None:
                raise AssertionError(
                    f"{prefix}: {problem.labels[position]}: VJP vs central finite differences of each element "
                    f"(J^T ct; the Jacobian's {rows} x {columns} entries exceed JACOBIAN_MAX_ENTRIES): {report.text}"
                )
            rtol, atol = options.tolerance(grad.dtype)
            errors.append(relative_error(np.asarray(grad, np.float64), numerical[position], rtol=rtol, atol=atol))
        return errors

    numerical = _whole_columns(problem, differentiated, carried, cotangent, x64)  # (columns, rows)
    analytic = _rows_program(problem.fn, problem.options)(
        differentiated, carried, _placeholders(cotangent)
    )  # per leaf (rows, n)
    start = 0
    for position, leaf in enumerate(differentiated):
        expected = numerical[start : start + leaf.size].T
        start += leaf.size
        actual = np.asarray(analytic[position], np.float64).reshape(rows, leaf.size)
        rtol, atol = options.tolerance(leaf.dtype)
        noise = _noise(problem.linear[position], x64)
        magnitude = float(np.max(np.abs(expected), initial=0.0))
        allowed = atol + (rtol + noise) * magnitude

        def where(index, leaf=leaf, path=problem.paths[position]):
            row, column = index
            out_path, out_index = _output_index(outputs, row)
            leaf_index = tuple(int(i) for i in np.unravel_index(column, leaf.shape))
            return f"(d output{out_path}{list(out_index)} / d {path}{list(leaf_index)})"

        report = mismatch_report(
            actual,
            expected,
            allowed,
            rtol=rtol,
            atol=atol,
            dtype=jnp.dtype(leaf.dtype).name,
            allowance_text=(
                f"allowed per entry: atol {atol:.3g} + (rtol {rtol:.3g} + finite-difference noise {noise:.3g}) "
                f"* max|J| {magnitude:.3g} = {allowed:.3g}"
            ),
            index_text=where,
        )
        if report is not None:
            raise AssertionError(
                f"{prefix}: {problem.labels[position]}: Jacobian ({rows} x {leaf.size}) from VJPs of the output basis "
                f"vs central finite differences, column by column: {report.text}"
            )
        errors.append(relative_error(actual, expected, rtol=rtol, atol=atol))
    return errors


def _vjp_mismatch(problem, position, differentiated, grad, numerical, column_norms, options, x64):
    """One leaf's VJP vs ``J^T ct`` from differences, allowing ``atol + rtol max|J^T ct| + nu max|ct * J e_i|``."""
    leaf = differentiated[position]
    rtol, atol = options.tolerance(leaf.dtype)
    noise = _noise(problem.linear[position], x64)
    magnitude = float(np.max(np.abs(numerical), initial=0.0))
    spread = float(np.max(column_norms, initial=0.0))
    allowed = atol + rtol * magnitude + noise * spread
    return mismatch_report(
        np.asarray(grad, np.float64),
        numerical.reshape(leaf.shape),
        allowed,
        rtol=rtol,
        atol=atol,
        dtype=jnp.dtype(leaf.dtype).name,
        allowance_text=(
            f"allowed per element: atol {atol:.3g} + rtol {rtol:.3g} * max|expected| {magnitude:.3g} + "
            f"finite-difference noise {noise:.3g} * max_i |ct * J e_i| {spread:.3g} = {allowed:.3g}"
        ),
    )


def _contracted_columns(problem, differentiated, carried, cotangent, positions, x64, elements=None):
    """``(J^T ct, |ct * J e_i|)`` per element of each leaf in ``positions`` (or only ``elements``), by differences."""
    with jax.enable_x64(x64):
        points, fd_carried, fd_cotangent = _in_reference_precision(x64, (differentiated, carried, cotangent))
        steps = finite_differences.step_sizes(points, problem.linear)
        chosen = [np.arange(points[p].size) if elements is None else np.asarray(elements) for p in positions]
        leaf_of = np.concatenate([np.full(c.size, p, np.int32) for p, c in zip(positions, chosen)])
        element_of = np.concatenate(chosen).astype(np.int32)
        dots, norms = finite_differences.columns_program(problem.fn, False)(
            points, fd_carried, _placeholders(fd_cotangent), leaf_of, element_of, jnp.asarray(steps, points[0].dtype)
        )
        dots, norms = np.asarray(dots, np.float64), np.asarray(norms, np.float64)
    bounds = list(itertools.pairwise(np.cumsum([0] + [c.size for c in chosen])))
    return [dots[a:b] for a, b in bounds], [norms[a:b] for a, b in bounds]


def _whole_columns(problem, differentiated, carried, cotangent, x64) -> np.ndarray:
    """Every column of the Jacobian (one row per element of the leaves, in order) by central differences."""
    with jax.enable_x64(x64):
        points, fd_carried, fd_cotangent = _in_reference_precision(x64, (differentiated, carried, cotangent))
        steps = finite_differences.step_sizes(points, problem.linear)
        leaf_of = np.concatenate([np.full(p.size, i, np.int32) for i, p in enumerate(points)])
        element_of = np.concatenate([np.arange(p.size, dtype=np.int32) for p in points])
        return np.asarray(
            finite_differences.columns_program(problem.fn, True)(
                points,
                fd_carried,
                _placeholders(fd_cotangent),
                leaf_of,
                element_of,
                jnp.asarray(steps, points[0].dtype),
            ),
            np.float64,
        )


@functools.lru_cache(maxsize=256)
def _rows_program(flat, options=()):
    """``run(differentiated, carried, cotangent) -> per leaf (rows, *leaf)``: the VJP of each output basis vector.

    Evaluated one row after another (``lax.map``), so the Jacobian does not rest
    on the VJP's batching rule (``check_batched`` checks that).
    """
    pullback = _vjp(flat)

    def run(differentiated, carried, cotangent):
        out_shape = jax.eval_shape(flat, differentiated, carried)
        leaves, treedef = jax.tree.flatten(out_shape)
        sizes = [s.size if is_float(s) else 0 for s in leaves]
        offsets = np.cumsum([0, *sizes])

        def row(r):
            basis = jnp.zeros(int(offsets[-1]), jnp.float32).at[r].set(1.0)
            ct = [
                basis[offsets[i] : offsets[i + 1]].reshape(s.shape).astype(s.dtype)
                if is_float(s)
                else jnp.zeros(s.shape, jnp.int32)
                for i, s in enumerate(leaves)
            ]
            return pullback(differentiated, carried, jax.tree.unflatten(treedef, ct))[1]

        return lax.map(row, jnp.arange(int(offsets[-1])))

    return program_jit(run, options)


# ---------------------------------------------------------------------------- vmap and second order


def _batched_check(problem, problems, options, run) -> float:
    """The VJP under ``jax.vmap`` over the stacked problems vs the VJP of each problem alone (by ``run``)."""
    stacked = jax.tree.map(lambda *leaves: np.stack(leaves), *[_with_placeholders(p) for p in problems])
    batched_outputs, batched_grads = jax.tree.map(np.asarray, _batched_program(problem.fn, problem.options)(*stacked))
    errors = []
    for b, (differentiated, carried, cotangent) in enumerate(problems):
        outputs, grads = run(differentiated, carried, _placeholders(cotangent))
        errors.append(
            assert_close(
                jax.tree.map(lambda y, b=b: y[b], batched_outputs),
                jax.tree.map(np.asarray, outputs),
                rtol=options.rtol,
                atol=options.atol,
                what=f"check_vjp: forward value under jax.vmap, problem {b} of {len(problems)}, vs alone",
            )
        )
        for position, grad in enumerate(grads):
            errors.append(
                assert_close(
                    batched_grads[position][b],
                    np.asarray(grad),
                    rtol=options.rtol,
                    atol=options.atol,
                    what=f"check_vjp: {problem.labels[position]}: VJP under jax.vmap, problem {b} of "
                    f"{len(problems)}, vs alone",
                )
            )
    return max(errors)


@functools.lru_cache(maxsize=256)
def _batched_program(flat, options=()):
    return program_jit(jax.vmap(_vjp(flat)), options)


def _second_order_problem(problem: _Problem) -> _Problem:
    """The VJP as a function: ``(differentiated, (carried, ct)) -> vjp(ct)``, with the reference's likewise."""
    return dataclasses.replace(
        problem,
        fn=_second_order_function(problem.fn),
        reference=None if problem.reference is None else _second_order_function(problem.reference),
    )


@functools.lru_cache(maxsize=512)
def _second_order_function(flat):
    pullback = _vjp(flat)

    def gradient(differentiated, carried_and_cotangent):
        carried, cotangent = carried_and_cotangent
        return pullback(differentiated, carried, cotangent)[1]

    return gradient


# ---------------------------------------------------------------------------- small pieces


def _vjp(flat):
    """``run(differentiated, carried, cotangent) -> (outputs, grads)``; integer outputs' cotangents become float0."""

    def run(differentiated, carried, cotangent):
        outputs, pullback = jax.vjp(lambda *d: flat(d, carried), *differentiated)
        cotangent = jax.tree.map(
            lambda c, y: c.astype(y.dtype) if is_float(y) else np.zeros(y.shape, jax.dtypes.float0), cotangent, outputs
        )
        return outputs, pullback(cotangent)

    return run


def _vjp_of_vjp(flat):
    """``run(differentiated, carried, cotangent, second_cotangent) -> (outputs, grads, second_grads)``.

    ``second_grads`` is the VJP of ``x -> grads`` (``grads`` as :func:`_vjp`'s) for ``second_cotangent``.
    """
    pullback = _vjp(flat)

    def run(differentiated, carried, cotangent, second_cotangent):
        def gradient(*d):
            outputs, grads = pullback(d, carried, cotangent)
            return grads, outputs

        grads, second_pullback, outputs = jax.vjp(gradient, *differentiated, has_aux=True)
        second_cotangent = tuple(c.astype(g.dtype) for c, g in zip(second_cotangent, grads))
        return outputs, grads, second_pullback(second_cotangent)

    return run


def _noise(linear: bool, x64: bool) -> float:
    """The relative noise allowed to central differences (see :data:`NUMERICAL_RTOL`)."""
    if linear:
        return TOLERANCES["float64" if x64 else "float32"].rtol
    return NUMERICAL_RTOL if x64 else NUMERICAL_RTOL_FLOAT32


def _in_reference_precision(x64: bool, tree: Any) -> Any:
    """Floating leaves in float64 (``x64``), else in their accumulator dtype: references and differences run so."""
    if x64:
        return jax.tree.map(as_float64, tree)
    return jax.tree.map(lambda a: a.astype(accumulator_dtype(a.dtype)) if is_float(a) else a, tree)


def _random_cotangent(rng: np.random.Generator, out_shape: Any) -> Any:
    """Standard normal per floating output, rounded to its dtype; integer placeholders elsewhere."""

    def draw(s):
        if is_float(s):
            return on_device(rng.standard_normal(s.shape).astype(s.dtype))
        return np.zeros(s.shape, np.int32)

    return jax.tree.map(draw, out_shape)


def _placeholders(cotangent: Any) -> Any:
    """``float0`` leaves as int32 zeros: float0 cannot cross a jit boundary (the program turns them back)."""
    return jax.tree.map(
        lambda c: np.zeros(np.shape(c), np.int32) if getattr(c, "dtype", None) == jax.dtypes.float0 else c, cotangent
    )


def _with_placeholders(problem):
    differentiated, carried, cotangent = problem
    return differentiated, carried, _placeholders(cotangent)


def _jittered(rng: np.random.Generator, leaves: tuple) -> tuple:
    """Each leaf times an elementwise factor in [0.9, 1.1]: another valid point, same signs and zeros."""
    return tuple(
        on_device((np.asarray(a, np.float64) * rng.uniform(0.9, 1.1, a.shape)).astype(a.dtype)) for a in leaves
    )


def _output_index(outputs, row: int) -> tuple[str, tuple[int, ...]]:
    """The output leaf (path) and index of row ``row`` of the flattened floating outputs."""
    for path, s in outputs:
        if row < s.size:
            return path, tuple(int(i) for i in np.unravel_index(row, s.shape))
        row -= s.size
    raise IndexError(row)


def _max_or_none(values) -> float | None:
    values = [v for v in values if v is not None]
    return max(values) if values else None

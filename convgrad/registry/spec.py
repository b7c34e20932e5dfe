"""The types of the registry: a :class:`Case` (one configuration), an :class:`OpSpec` (one op), and :func:`op_spec`.

An :class:`OpSpec` reads like JAX's ``grad_test_spec(op, nargs, order, rng, dtypes)``: the
custom op, its autodiff twin (plain lax, :mod:`convgrad.autodiff`), its loop reference and
loop VJP (NumPy, :mod:`convgrad.loops`), its default grid of cases and a random case
sampler; the rest has defaults. Samplers take a :class:`Draw`: the tests pass one backed by
hypothesis (so failures shrink), the CLI one backed by NumPy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import numpy as np

T = TypeVar("T")

DTYPES = ("float32", "float64", "bfloat16", "float16")


class Draw(Protocol):
    """Where a sampler gets its random choices."""

    def integer(self, low: int, high: int) -> int:
        """An int in ``[low, high]``."""
        ...

    def choice(self, options: Sequence[T]) -> T:
        """One of ``options``."""
        ...


class RandomDraw:
    """:class:`Draw` backed by a NumPy generator."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def integer(self, low: int, high: int) -> int:
        return int(self.rng.integers(low, high + 1))

    def choice(self, options: Sequence[T]) -> T:
        return options[int(self.rng.integers(len(options)))]


@dataclasses.dataclass(frozen=True)
class Case:
    """One configuration: the shape of each array argument (``None`` for an absent one) and keyword arguments.

    ``values`` names how a spec's ``make_inputs`` draws the values (``"normal"``
    unless a spec defines others, such as ``"saturated"`` logits); it is never
    passed to the op.
    """

    shapes: tuple[tuple[int, ...] | None, ...]
    kwargs: tuple[tuple[str, Any], ...] = ()
    values: str = "normal"

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.kwargs)

    def __str__(self) -> str:
        shapes = ", ".join("None" if s is None else "x".join(map(str, s)) for s in self.shapes)
        options = ", ".join(f"{k}={v!r}" for k, v in self.kwargs)
        values = "" if self.values == "normal" else f" [{self.values} values]"
        return f"({shapes}{'; ' if options else ''}{options}){values}"


def case(*shapes: tuple[int, ...] | None, values: str = "normal", **kwargs: Any) -> Case:
    """A :class:`Case` from argument shapes and the op's keyword arguments."""
    return Case(tuple(shapes), tuple(sorted(kwargs.items())), values)


def standard_normal(rng: np.random.Generator, case: Case, dtype: Any) -> tuple[Any, ...]:
    """Standard normal arrays of the case's shapes in ``dtype`` (``None`` for an absent argument)."""
    return tuple(None if s is None else rng.standard_normal(s).astype(dtype) for s in case.shapes)


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """Everything the checks need to know about one op (build it with :func:`op_spec`).

    ``fn`` and ``autodiff`` are called as ``f(*arrays, **options)``. ``loop_forward``
    and ``loop_vjp(*arrays, cotangent, **options)`` are NumPy float64; ``loop_vjp``
    returns one gradient per argument (``None`` where not differentiable).
    ``make_inputs(rng, case, dtype)`` builds the arrays; ``argnums`` are the
    differentiable arguments and ``linear_argnums`` those in which ``fn`` is affine
    (adjoint identity, exact finite differences). ``implementation_options`` name
    keyword arguments that choose how convgrad computes the op, not what
    (``conv``'s ``formulation``): the twin and the loops never see them.
    """

    name: str
    fn: Callable[..., Any]
    autodiff: Callable[..., Any]
    loop_forward: Callable[..., Any]
    loop_vjp: Callable[..., tuple[Any, ...]]
    cases: tuple[Case, ...]
    sample: Callable[[Draw], Case]
    argnums: tuple[int, ...]
    linear_argnums: tuple[int, ...]
    make_inputs: Callable[[np.random.Generator, Case, Any], tuple[Any, ...]]
    dtypes: tuple[str, ...]
    implementation_options: tuple[str, ...]

    def inputs(self, rng: np.random.Generator, case: Case, dtype: Any) -> tuple[Any, ...]:
        """The arrays of ``case`` in ``dtype``, drawn by ``make_inputs``."""
        return self.make_inputs(rng, case, dtype)

    def reference_options(self, case: Case) -> dict[str, Any]:
        """``case.options`` without the :attr:`implementation_options`: what the twin and the loops take."""
        return {k: v for k, v in case.kwargs if k not in self.implementation_options}


def op_spec(
    fn: Callable[..., Any],
    autodiff: Callable[..., Any],
    loop_forward: Callable[..., Any],
    loop_vjp: Callable[..., tuple[Any, ...]],
    cases: Sequence[Case],
    sample: Callable[[Draw], Case],
    *,
    argnums: tuple[int, ...] = (0,),
    linear_argnums: tuple[int, ...] = (),
    make_inputs: Callable[[np.random.Generator, Case, Any], tuple[Any, ...]] = standard_normal,
    dtypes: tuple[str, ...] = DTYPES,
    implementation_options: tuple[str, ...] = (),
    name: str | None = None,
) -> OpSpec:
    """An :class:`OpSpec` named after ``fn``; by default one differentiable argument, standard normal inputs."""
    return OpSpec(
        name=fn.__name__ if name is None else name,
        fn=fn,
        autodiff=autodiff,
        loop_forward=loop_forward,
        loop_vjp=loop_vjp,
        cases=tuple(cases),
        sample=sample,
        argnums=argnums,
        linear_argnums=linear_argnums,
        make_inputs=make_inputs,
        dtypes=dtypes,
        implementation_options=implementation_options,
    )

"""How :func:`~convgrad.testing.check_vjp` splits a call's arguments: static, carried and differentiated leaves.

Every argument is flattened into its pytree leaves (``jax.tree_util``), and each leaf is

- **static** when it is not an array (a Python scalar, a string, any other object) or
  belongs to an argument in ``static_argnums``: closed over, never traced, so a
  ``custom_vjp`` with ``nondiff_argnums`` is called as its author calls it;
- **differentiated** when it is a floating array in an argument of ``argnums``;
- **carried** otherwise (integer and boolean arrays, floating arrays outside
  ``argnums``): traced, passed through, never differentiated.

A :class:`Layout` turns the argument tuple into ``(differentiated, carried)`` leaf
tuples and back; :func:`flat_function` turns ``fn`` into ``flat(differentiated,
carried)``, the form every check program takes. Both are cached, so that checking one
function many times compiles each program once.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from convgrad.testing.arrays import is_array, is_float, on_device

STATIC, CARRIED, DIFFERENTIATED = "static", "carried", "differentiated"


class _WholeArgument:
    """Wraps an argument of ``static_argnums`` so that it flattens to one static leaf."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


@dataclasses.dataclass(frozen=True, eq=False)
class Layout:
    """Which leaf of the arguments is static, carried or differentiated, and what to call each."""

    treedef: Any
    kinds: tuple[str, ...]
    static_values: tuple[Any, ...]
    argument_of: tuple[int, ...]  # per leaf, the position of its argument
    paths: tuple[str, ...]  # per leaf, e.g. "params['b']"
    static_argnums: tuple[int, ...]
    key: Any  # hashable identity of the layout, or None when a static value is unhashable

    def __hash__(self) -> int:
        return hash(self.key) if self.key is not None else id(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Layout):
            return NotImplemented
        return self is other or (self.key is not None and self.key == other.key)

    @property
    def differentiated_paths(self) -> tuple[str, ...]:
        return tuple(p for p, k in zip(self.paths, self.kinds) if k == DIFFERENTIATED)

    @property
    def differentiated_arguments(self) -> tuple[int, ...]:
        return tuple(a for a, k in zip(self.argument_of, self.kinds) if k == DIFFERENTIATED)

    def split(self, args: Sequence[Any]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """``(differentiated, carried)``: the array leaves of ``args`` (as JAX arrays), in leaf order."""
        leaves, treedef = _flatten(args, self.static_argnums)
        if treedef != self.treedef:
            raise ValueError(f"check_vjp: arguments of structure {treedef} where {self.treedef} was expected")
        differentiated = tuple(on_device(v) for v, k in zip(leaves, self.kinds) if k == DIFFERENTIATED)
        carried = tuple(on_device(v) for v, k in zip(leaves, self.kinds) if k == CARRIED)
        return differentiated, carried

    def rebuild(self, differentiated: Sequence[Any], carried: Sequence[Any]) -> tuple[Any, ...]:
        """The argument tuple, from the traced leaves and the layout's static values."""
        sources = {DIFFERENTIATED: iter(differentiated), CARRIED: iter(carried), STATIC: iter(self.static_values)}
        return tuple(jax.tree_util.tree_unflatten(self.treedef, [next(sources[k]) for k in self.kinds]))

    def gradients_by_argument(self, grads: Sequence[Any], argnums: Sequence[int], args: Sequence[Any]) -> tuple:
        """One gradient pytree per argument of ``argnums`` (``jax.vjp``'s form), from the per-leaf gradients.

        Integer and boolean leaves of a differentiated argument get ``float0``
        zeros, static leaves ``None``.
        """
        leaves, _ = _flatten(args, self.static_argnums)
        grads = iter(grads)
        filled = []
        for leaf, kind in zip(leaves, self.kinds):
            if kind == DIFFERENTIATED:
                filled.append(next(grads))
            elif kind == CARRIED:
                filled.append(np.zeros(np.shape(leaf), jax.dtypes.float0))
            else:
                filled.append(None)
        per_argument = jax.tree_util.tree_unflatten(self.treedef, filled)
        return tuple(per_argument[i] for i in argnums)


def layout_of(
    fn: Callable[..., Any],
    args: Sequence[Any],
    argnums: int | Sequence[int] | None,
    static_argnums: int | Sequence[int] = (),
) -> Layout:
    """The :class:`Layout` of a call ``fn(*args)`` differentiated w.r.t. ``argnums`` (default: every floating one).

    Raises:
      ValueError: for an argument number out of range, one both in ``argnums``
        and ``static_argnums``, or no floating array to differentiate.
      TypeError: for an argument of ``argnums`` without a floating array leaf.
    """
    names = argument_names(fn, len(args))
    static_argnums = _positions("static_argnums", static_argnums, len(args))
    leaves_with_paths, treedef = jax.tree_util.tree_flatten_with_path(_wrap(args, static_argnums))
    argument_of = tuple(path[0].idx for path, _ in leaves_with_paths)
    paths = tuple(names[path[0].idx] + jax.tree_util.keystr(path[1:]) for path, _ in leaves_with_paths)
    leaves = [leaf for _, leaf in leaves_with_paths]
    floating = {a for a, leaf in zip(argument_of, leaves) if is_float(leaf) and a not in static_argnums}
    if argnums is None:
        argnums = tuple(sorted(floating))
    else:
        argnums = _positions("argnums", argnums, len(args))
        for i in argnums:
            if i in static_argnums:
                raise ValueError(f"check_vjp: argument {i} ({names[i]}) is in both argnums and static_argnums")
            if i not in floating:
                raise TypeError(
                    f"check_vjp: argument {i} ({names[i]}) has no floating array leaf to differentiate; "
                    f"argnums={argnums}"
                )
    if not argnums:
        raise ValueError(
            "check_vjp: no floating array among the arguments to differentiate (Python scalars are static); "
            "pass arrays, or argnums"
        )
    kinds = []
    static_values = []
    for argument, leaf in zip(argument_of, leaves):
        if isinstance(leaf, _WholeArgument) or not is_array(leaf):
            kinds.append(STATIC)
            static_values.append(leaf.value if isinstance(leaf, _WholeArgument) else leaf)
        elif is_float(leaf) and argument in argnums:
            kinds.append(DIFFERENTIATED)
        else:
            kinds.append(CARRIED)
    try:
        key = (treedef, tuple(kinds), static_argnums, tuple(_static_key(v) for v in static_values))
        hash(key)
    except TypeError:
        key = None
    return Layout(treedef, tuple(kinds), tuple(static_values), argument_of, paths, static_argnums, key)


@functools.lru_cache(maxsize=1024)
def flat_function(fn: Callable[..., Any], layout: Layout) -> Callable[[tuple, tuple], Any]:
    """``flat(differentiated, carried) = fn(*layout.rebuild(differentiated, carried))``; one object per (fn, layout)."""

    def flat(differentiated, carried):
        return fn(*layout.rebuild(differentiated, carried))

    return flat


def argument_names(fn: Callable[..., Any], count: int) -> list[str]:
    """The names of ``fn``'s first ``count`` positional parameters (``arg{i}`` where the signature does not say)."""
    try:
        params = [
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    return [params[i] if i < len(params) else f"arg{i}" for i in range(count)]


def _static_key(value: Any) -> Any:
    """What tells two static values apart: their type and value, a float by its bits (0.0 == -0.0 otherwise)."""
    if isinstance(value, float):
        return float, value.hex()
    return type(value), value


def _wrap(args: Sequence[Any], static_argnums: tuple[int, ...]) -> tuple[Any, ...]:
    return tuple(_WholeArgument(a) if i in static_argnums else a for i, a in enumerate(args))


def _flatten(args: Sequence[Any], static_argnums: tuple[int, ...]) -> tuple[list[Any], Any]:
    leaves, treedef = jax.tree_util.tree_flatten(_wrap(args, static_argnums))
    return [leaf.value if isinstance(leaf, _WholeArgument) else leaf for leaf in leaves], treedef


def _positions(name: str, value: int | Sequence[int], count: int) -> tuple[int, ...]:
    positions = (value,) if isinstance(value, int) else tuple(value)
    for i in positions:
        if not isinstance(i, int) or not -count <= i < count:
            raise ValueError(f"check_vjp: {name}={value!r} names no argument of the {count} given")
    return tuple(sorted({i % count for i in positions}))

"""Hypothesis strategies for property-testing convolution-like ops: the configurations convgrad's own tests draw.

Each strategy draws from the registry's sampler of a convgrad op
(:mod:`convgrad.registry`), through :class:`HypothesisDraw`, so that your tests see
the geometries convgrad's own tests see (strides above the kernel size, dilations,
asymmetric paddings, groups, depthwise, channels-last layouts, zero-padding edges),
and a failing configuration shrinks::

    from hypothesis import given
    from convgrad.testing import check_vjp
    from convgrad.testing.strategies import arrays_for, conv_configs

    @given(config=conv_configs(ndim=2, max_channels=4), data=st.data())
    def test_my_conv(config, data):
        x, w, b = data.draw(arrays_for(config, "float32"))
        check_vjp(lambda x, w, b: my_conv(x, w, b, **config.options), (x, w, b))

A configuration is a :class:`Config`: ``shapes`` (one per array argument, ``None`` for
an absent bias), ``options`` (the keyword arguments, with PyTorch's / lax's meaning:
``stride``, ``padding``, ``dilation``, ``groups``, ``dimension_numbers``, ...), and the
``op`` whose sampler drew it. ``ndim`` and ``max_channels`` are met by drawing again
(up to :data:`MAX_TRIES` times): the configurations keep the registry's distribution,
conditioned on them.

This module imports hypothesis (a test dependency); :mod:`convgrad.testing` does not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import jax.numpy as jnp
import numpy as np
from hypothesis import reject
from hypothesis import strategies as st

from convgrad.registry import OPS, Case

T = TypeVar("T")

MAX_TRIES = 50


class HypothesisDraw:
    """:class:`convgrad.registry.Draw` backed by hypothesis, so that failing cases shrink.

    Takes ``st.data()``'s object (``HypothesisDraw(data)``) or the ``draw``
    function of an ``@st.composite`` strategy.
    """

    def __init__(self, data: st.DataObject | Callable[[st.SearchStrategy[Any]], Any]):
        self._draw = data.draw if hasattr(data, "draw") else data

    def integer(self, low: int, high: int) -> int:
        return self._draw(st.integers(low, high))

    def choice(self, options: Sequence[T]) -> T:
        return self._draw(st.sampled_from(list(options)))


@dataclasses.dataclass(frozen=True)
class Config:
    """A drawn configuration: the registry op whose sampler drew it, and its :class:`~convgrad.registry.Case`."""

    op: str
    case: Case

    @property
    def shapes(self) -> tuple[tuple[int, ...] | None, ...]:
        """The shape of each array argument (``None`` for an absent one, such as a bias)."""
        return self.case.shapes

    @property
    def options(self) -> dict[str, Any]:
        """The keyword arguments of the op."""
        return self.case.options

    @property
    def ndim(self) -> int:
        """The number of spatial dimensions."""
        return len(self.case.shapes[0]) - 2

    @property
    def channels(self) -> int:
        """The largest channel count among the input and the output."""
        return max(_channel_counts(self.op, self.case))


def conv_configs(
    ndim: int | None = None, max_channels: int | None = None, *, formulations: bool = False
) -> st.SearchStrategy[Config]:
    """Configurations of a convolution ``conv(x, w, b, **options)``: lax/PyTorch semantics, any layout.

    ``x (N, C, *spatial)`` and ``w (O, C/groups, *kernel)`` (or as
    ``dimension_numbers`` lays them out), ``b (O,)`` or ``None``; ``options``:
    ``stride``, ``padding`` (an int, ints, pairs, ``"SAME"`` or ``"VALID"``),
    ``dilation``, ``groups``, and sometimes ``dimension_numbers``. With
    ``formulations``, also convgrad's ``formulation`` choice (the registry's
    ``implementation_options``, which ops of your own do not take).
    """
    return _configs("conv", ndim, max_channels, implementation=formulations)


def conv_transpose_configs(ndim: int | None = None, max_channels: int | None = None) -> st.SearchStrategy[Config]:
    """Configurations of a transposed convolution (PyTorch's ConvTranspose): ``x``, ``w (C, O/groups, *k)``, ``b``.

    ``options``: ``stride``, ``padding``, ``output_padding``, ``dilation``, ``groups``.
    """
    return _configs("conv_transpose", ndim, max_channels)


def pool_configs(
    ndim: int | None = None, max_channels: int | None = None, *, op: str = "max_pool"
) -> st.SearchStrategy[Config]:
    """Configurations of a pooling ``pool(x, window, stride, padding, channel_axis=...)``.

    ``options``: ``window``, ``stride`` (``None``: the window), ``padding`` (an
    int, ints or pairs, each below the window), sometimes ``channel_axis=-1``.
    ``op`` is ``"max_pool"`` (whose :func:`arrays_for` values have no ties, so
    finite differences never cross a kink) or ``"avg_pool"``.
    """
    if op not in ("max_pool", "avg_pool"):
        raise ValueError(f"pool_configs: op={op!r}; expected 'max_pool' or 'avg_pool'")
    return _configs(op, ndim, max_channels)


def arrays_for(config: Config, dtype: Any) -> st.SearchStrategy[tuple[Any, ...]]:
    """The array arguments for ``config`` in ``dtype``, drawn as the registry draws them (``None`` stays ``None``).

    Standard normal values, except where the op needs others (``max_pool``:
    distinct values, so no window has a tie). The values come from a NumPy
    generator seeded by hypothesis: a failure reproduces, and shrinks to seed 0.
    """
    spec = OPS[config.op]
    name = jnp.dtype(dtype).name

    def build(seed: int) -> tuple[Any, ...]:
        values = spec.inputs(np.random.default_rng(seed), config.case, name)
        return tuple(None if v is None else jnp.asarray(v) for v in values)

    return st.integers(0, 2**32 - 1).map(build)


def _configs(op: str, ndim: int | None, max_channels: int | None, implementation: bool = False):
    if ndim is not None and ndim not in (1, 2, 3):
        raise ValueError(f"{op} configs: ndim={ndim!r}; the registry draws 1 to 3 spatial dimensions")
    if max_channels is not None and max_channels < 1:
        raise ValueError(f"{op} configs: max_channels={max_channels!r}; expected a positive int")
    sample = OPS[op].sample
    drop = () if implementation else OPS[op].implementation_options

    @st.composite
    def draw_config(draw):
        for _ in range(MAX_TRIES):
            case = sample(HypothesisDraw(draw))
            kept = tuple((k, v) for k, v in case.kwargs if k not in drop)
            config = Config(op, dataclasses.replace(case, kwargs=kept))
            if (ndim is None or config.ndim == ndim) and (max_channels is None or config.channels <= max_channels):
                return config
        reject()

    return draw_config()


def _channel_counts(op: str, case: Case) -> tuple[int, int]:
    """(input channels, output channels) of a registry case of ``op``."""
    x_shape, *rest = case.shapes
    options = case.options
    if op == "conv":
        n = len(x_shape) - 2
        lhs, rhs, _ = options.get("dimension_numbers") or ("NC" + "DHW"[3 - n :], "OI" + "DHW"[3 - n :], None)
        return x_shape[lhs.index("C")], rest[0][rhs.index("O")]
    if op == "conv_transpose":
        return x_shape[1], options.get("groups", 1) * rest[0][1]
    channels = x_shape[options.get("channel_axis", 1)]
    return channels, channels

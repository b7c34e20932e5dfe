"""convgrad.testing.strategies: the configurations a user's property tests draw, as convgrad's own tests do."""

from __future__ import annotations

import subprocess
import sys

import jax.numpy as jnp
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convgrad
from convgrad.testing import check_vjp
from convgrad.testing.strategies import (
    Config,
    arrays_for,
    conv_configs,
    conv_transpose_configs,
    pool_configs,
)


def test_convgrad_testing_does_not_import_hypothesis():
    """hypothesis is a test dependency: only convgrad.testing.strategies may need it."""
    code = "import sys, convgrad.testing; sys.exit('hypothesis' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize("ndim", [1, 2, 3])
@given(data=st.data())
def test_conv_configs_meet_their_constraints(ndim, data):
    config = data.draw(conv_configs(ndim=ndim, max_channels=3))
    assert isinstance(config, Config) and config.op == "conv"
    assert config.ndim == ndim and config.channels <= 3
    assert "formulation" not in config.options
    x_shape, w_shape, b_shape = config.shapes
    assert len(w_shape) == ndim + 2 and len(x_shape) in (ndim + 1, ndim + 2)  # an unbatched x: one axis fewer
    rhs = config.options.get("dimension_numbers", (None, "OI" + "DHW"[3 - ndim :], None))[1]
    assert b_shape in (None, (w_shape[rhs.index("O")],))  # a bias of one value per output channel, or none


@given(config=conv_configs(ndim=2, max_channels=4), data=st.data())
def test_a_users_property_test_of_a_convolution(config, data):
    """The README's pattern: draw a configuration and its arrays, check the op's VJP (here convgrad's conv)."""
    x, w, b = data.draw(arrays_for(config, "float64"))
    assert x.shape == config.shapes[0] and w.shape == config.shapes[1] and x.dtype == jnp.float64

    def conv(x, w, b):
        return convgrad.conv(x, w, b, **config.options)

    check_vjp(conv, (x, w, b), linear_argnums=(0, 1, 2))  # an absent bias is None: static


@given(config=pool_configs(ndim=1, op="max_pool"), data=st.data())
def test_max_pool_arrays_have_no_ties(config, data):
    (x,) = data.draw(arrays_for(config, "float32"))
    channel_axis = config.options.get("channel_axis", 1)
    planes = jnp.moveaxis(x, channel_axis, 1).reshape(x.shape[0], x.shape[channel_axis], -1)
    for plane in planes.reshape(-1, planes.shape[-1]):
        assert len(set(plane.tolist())) == plane.size


@given(config=conv_transpose_configs(max_channels=2))
def test_conv_transpose_configs_meet_their_constraints(config):
    assert config.op == "conv_transpose" and config.channels <= 2
    assert set(config.options) >= {"stride", "padding", "output_padding", "dilation", "groups"}


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        (lambda: conv_configs(ndim=4), r"conv configs: ndim=4"),
        (lambda: conv_configs(max_channels=0), r"conv configs: max_channels=0"),
        (lambda: pool_configs(op="lp_pool"), r"pool_configs: op='lp_pool'"),
    ],
)
def test_bad_strategy_arguments_are_named(strategy, message):
    with pytest.raises(ValueError, match=message):
        strategy()

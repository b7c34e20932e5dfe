"""convgrad: hand-derived VJPs for convolutional networks, and the tools to verify them."""

from convgrad.ops.conv import conv as conv
from convgrad.ops.conv import flip_and_swap as flip_and_swap

__version__ = "0.1.0"

__all__ = ["conv", "flip_and_swap"]

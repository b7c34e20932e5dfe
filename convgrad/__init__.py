"""convgrad: hand-derived VJPs for convolutional networks, and the tools to verify them."""

from convgrad.ops.conv import conv as conv
from convgrad.ops.conv import flip_and_swap as flip_and_swap
from convgrad.ops.conv_transpose import conv_transpose as conv_transpose
from convgrad.ops.conv_transpose import zero_insert as zero_insert
from convgrad.ops.pooling import avg_pool as avg_pool
from convgrad.ops.pooling import max_pool as max_pool
from convgrad.ops.pooling import max_unpool as max_unpool

__version__ = "0.1.0"

__all__ = ["avg_pool", "conv", "conv_transpose", "flip_and_swap", "max_pool", "max_unpool", "zero_insert"]

"""convgrad: hand-derived VJPs for convolutional networks, and the tools to verify them."""

from convgrad.ops.activations import log_softmax as log_softmax
from convgrad.ops.activations import relu as relu
from convgrad.ops.activations import sigmoid as sigmoid
from convgrad.ops.activations import softmax as softmax
from convgrad.ops.activations import tanh as tanh
from convgrad.ops.conv import conv as conv
from convgrad.ops.conv_textbook import flip_and_swap as flip_and_swap
from convgrad.ops.conv_transpose import conv_transpose as conv_transpose
from convgrad.ops.conv_transpose import zero_insert as zero_insert
from convgrad.ops.dense import dense as dense
from convgrad.ops.dropout import dropout as dropout
from convgrad.ops.losses import mse as mse
from convgrad.ops.losses import softmax_cross_entropy as softmax_cross_entropy
from convgrad.ops.normalization import batch_norm as batch_norm
from convgrad.ops.normalization import group_norm as group_norm
from convgrad.ops.normalization import instance_norm as instance_norm
from convgrad.ops.normalization import layer_norm as layer_norm
from convgrad.ops.pooling import avg_pool as avg_pool
from convgrad.ops.pooling import max_pool as max_pool
from convgrad.ops.pooling import max_unpool as max_unpool
from convgrad.ops.upsample import upsample as upsample

__version__ = "0.1.0"

__all__ = [
    "avg_pool",
    "batch_norm",
    "conv",
    "conv_transpose",
    "dense",
    "dropout",
    "flip_and_swap",
    "group_norm",
    "instance_norm",
    "layer_norm",
    "log_softmax",
    "max_pool",
    "max_unpool",
    "mse",
    "relu",
    "sigmoid",
    "softmax",
    "softmax_cross_entropy",
    "tanh",
    "upsample",
    "zero_insert",
]

"""Naive NumPy references, written from the definitions with explicit loops: the third, independent check.

No JAX, no flipped kernels, no zero insertion: each forward loops over output positions
and kernel taps, and each ``*_vjp`` walks the same loops and sends every cotangent back
along the tap that produced it (the chain rule, one term at a time). Everything runs in
float64 and channel-first layout; :mod:`convgrad.loops.layouts` adapts other layouts.
One module per op family, as in :mod:`convgrad.registry`. Slow by design; meant for small
shapes and for reading.
"""

from convgrad.loops.activations import log_softmax as log_softmax
from convgrad.loops.activations import log_softmax_vjp as log_softmax_vjp
from convgrad.loops.activations import relu as relu
from convgrad.loops.activations import relu_vjp as relu_vjp
from convgrad.loops.activations import sigmoid as sigmoid
from convgrad.loops.activations import sigmoid_vjp as sigmoid_vjp
from convgrad.loops.activations import softmax as softmax
from convgrad.loops.activations import softmax_vjp as softmax_vjp
from convgrad.loops.activations import tanh as tanh
from convgrad.loops.activations import tanh_vjp as tanh_vjp
from convgrad.loops.convolutions import conv as conv
from convgrad.loops.convolutions import conv_transpose as conv_transpose
from convgrad.loops.convolutions import conv_transpose_vjp as conv_transpose_vjp
from convgrad.loops.convolutions import conv_vjp as conv_vjp
from convgrad.loops.dense import dense as dense
from convgrad.loops.dense import dense_vjp as dense_vjp
from convgrad.loops.dropout import dropout as dropout
from convgrad.loops.dropout import dropout_vjp as dropout_vjp
from convgrad.loops.layouts import from_channel_first as from_channel_first
from convgrad.loops.layouts import to_channel_first as to_channel_first
from convgrad.loops.losses import mse as mse
from convgrad.loops.losses import mse_vjp as mse_vjp
from convgrad.loops.losses import softmax_cross_entropy as softmax_cross_entropy
from convgrad.loops.losses import softmax_cross_entropy_vjp as softmax_cross_entropy_vjp
from convgrad.loops.normalization import batch_norm as batch_norm
from convgrad.loops.normalization import batch_norm_vjp as batch_norm_vjp
from convgrad.loops.normalization import group_norm as group_norm
from convgrad.loops.normalization import group_norm_vjp as group_norm_vjp
from convgrad.loops.normalization import instance_norm as instance_norm
from convgrad.loops.normalization import instance_norm_vjp as instance_norm_vjp
from convgrad.loops.normalization import layer_norm as layer_norm
from convgrad.loops.normalization import layer_norm_vjp as layer_norm_vjp
from convgrad.loops.pooling import avg_pool as avg_pool
from convgrad.loops.pooling import avg_pool_vjp as avg_pool_vjp
from convgrad.loops.pooling import max_pool as max_pool
from convgrad.loops.pooling import max_pool_vjp as max_pool_vjp
from convgrad.loops.pooling import max_unpool as max_unpool
from convgrad.loops.pooling import max_unpool_vjp as max_unpool_vjp
from convgrad.loops.upsample import upsample as upsample
from convgrad.loops.upsample import upsample_vjp as upsample_vjp

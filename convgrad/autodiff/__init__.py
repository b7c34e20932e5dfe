"""The same ops written with plain lax / jax.nn, for ``jax.grad`` to differentiate.

These are the autodiff references of the verification suite and the
``--grads autodiff`` path of training: no ``custom_vjp`` anywhere here, so every
gradient of these functions comes from JAX's own differentiation rules. Their
arguments mean what they mean in :mod:`convgrad`; layouts are channel-first
unless ``dimension_numbers`` says otherwise.
"""

from convgrad.autodiff.activations import log_softmax as log_softmax
from convgrad.autodiff.activations import relu as relu
from convgrad.autodiff.activations import sigmoid as sigmoid
from convgrad.autodiff.activations import softmax as softmax
from convgrad.autodiff.activations import tanh as tanh
from convgrad.autodiff.convolutions import conv as conv
from convgrad.autodiff.convolutions import conv_transpose as conv_transpose
from convgrad.autodiff.dense import dense as dense
from convgrad.autodiff.dropout import dropout as dropout
from convgrad.autodiff.losses import mse as mse
from convgrad.autodiff.losses import softmax_cross_entropy as softmax_cross_entropy
from convgrad.autodiff.normalization import batch_norm as batch_norm
from convgrad.autodiff.normalization import group_norm as group_norm
from convgrad.autodiff.normalization import instance_norm as instance_norm
from convgrad.autodiff.normalization import layer_norm as layer_norm
from convgrad.autodiff.pooling import avg_pool as avg_pool
from convgrad.autodiff.pooling import max_pool as max_pool
from convgrad.autodiff.pooling import max_unpool as max_unpool
from convgrad.autodiff.upsample import upsample as upsample

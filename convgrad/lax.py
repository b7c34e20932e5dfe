"""convgrad's convolutions with exactly ``jax.lax``'s signatures and results, on hand-derived, verified VJPs.

A drop-in wherever code calls lax's convolutions by name. Flax's ``nnx.Conv`` and
``linen.Conv`` take the function as an argument::

    nnx.Conv(1, 32, (3, 3), conv_general_dilated=convgrad.lax.conv_general_dilated, rngs=rngs)

and every gradient of that layer then comes from :func:`conv_general_dilated`'s backward
(on CPU, through convgrad's faster formulations where they apply). The derivations are in
:mod:`convgrad.ops.conv_lax` and ``docs/derivations.md``.
"""

from convgrad.ops.conv_lax import conv_general_dilated as conv_general_dilated
from convgrad.ops.conv_lax import conv_transpose as conv_transpose

__all__ = ["conv_general_dilated", "conv_transpose"]

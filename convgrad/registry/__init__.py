"""The one table of convgrad's differentiable ops, walked by the tests, ``convgrad verify`` and ``convgrad bench``.

Each op's :class:`OpSpec` (:func:`op_spec`) names the custom op, its autodiff twin
(plain lax, :mod:`convgrad.autodiff`), its loop reference (NumPy, :mod:`convgrad.loops`),
a default grid of :class:`Case` s and a random case sampler; it sits in its family's
module beside those cases. Adding an op to a family's ``SPECS`` is what puts it under
every check. :data:`OPS` lists the families in the order of ``docs/derivations.md``:
convolutions, pooling, normalization, then the MLP side.
"""

from convgrad.registry import activations, convolutions, dense, dropout, losses, normalization, pooling, upsample
from convgrad.registry.spec import DTYPES as DTYPES
from convgrad.registry.spec import Case as Case
from convgrad.registry.spec import Draw as Draw
from convgrad.registry.spec import OpSpec as OpSpec
from convgrad.registry.spec import RandomDraw as RandomDraw
from convgrad.registry.spec import case as case
from convgrad.registry.spec import op_spec as op_spec

FAMILIES = (convolutions, pooling, normalization, dense, activations, losses, dropout, upsample)

OPS: dict[str, OpSpec] = {spec.name: spec for family in FAMILIES for spec in family.SPECS}

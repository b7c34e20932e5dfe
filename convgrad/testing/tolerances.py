"""The one table of tolerances, per dtype, and the allowance for finite-difference noise."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Normwise tolerances for one dtype: ``max|a - e| <= atol + rtol * max|e|``."""

    rtol: float
    atol: float
    why: str


# One place for every tolerance. ``eps`` is the dtype's machine epsilon (spacing
# of floats at 1). Reductions in these ops are at most a few thousand terms, and
# errors of rounded sums grow like sqrt(terms) * eps in practice; each rtol
# allows about 100 eps for float32/float64 and about 10 eps for the 16-bit types,
# whose outputs are themselves rounded to eps / 2. The references run in float64
# on the same (rounded) inputs, so these bound the error of the dtype under test
# alone. A wrong gradient (a missing flip, a mean for a sum) is off by O(1).
TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(rtol=1e-12, atol=1e-14, why="eps 2.2e-16; ~4500 eps"),
    "float32": Tolerance(rtol=2e-5, atol=2e-7, why="eps 1.2e-7; ~170 eps"),
    "float16": Tolerance(rtol=1e-2, atol=1e-4, why="eps 9.8e-4; ~10 eps"),
    "bfloat16": Tolerance(rtol=8e-2, atol=8e-4, why="eps 7.8e-3; ~10 eps"),
}

# Central differences f(x + h u) - f(x - h u) over 2 h in float64, h = eps^(1/3)
# times the scale of x: truncation h^2 |f'''| and rounding eps |f| / h are both
# about 4e-11 relative, so 1e-6 leaves room for curvature. Where the function is
# affine in the argument (``linear_argnums``) the difference is exact and the
# step is 1, so float64's own tolerance applies. Without float64 (TPU) the
# differences run in float32, whose eps^(2/3) is 2.4e-5: 1e-2 leaves the same room.
NUMERICAL_RTOL = 1e-6
NUMERICAL_RTOL_FLOAT32 = 1e-2


def tolerance_for(dtype: Any) -> Tolerance:
    """The :data:`TOLERANCES` entry for a floating ``dtype``.

    Raises:
      TypeError: for a dtype without an entry (integers, booleans).
    """
    name = jnp.dtype(dtype).name
    if name not in TOLERANCES:
        raise TypeError(f"tolerance_for: no tolerance for dtype={name}; floating dtypes only: {sorted(TOLERANCES)}")
    return TOLERANCES[name]

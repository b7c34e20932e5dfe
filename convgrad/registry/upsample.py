"""Registry spec of ``upsample``: cases over every mode, size and scale rule and layout; a sampler; the spec."""

from __future__ import annotations

import convgrad
from convgrad import autodiff, loops
from convgrad.loops.layouts import channel_axis_in_layout
from convgrad.registry.spec import Case, Draw, case, op_spec

LINEAR_MODE = {1: "linear", 2: "bilinear", 3: "trilinear"}

UPSAMPLE_CASES = (
    case((2, 3, 4, 5), scale_factor=2),  # nearest 2x: out = 2 in, the o // 2 rule
    case((2, 2, 3, 4), size=(7, 5), mode="nearest"),  # a non-integer ratio per axis
    case((1, 2, 4), scale_factor=1.2),  # out = floor(4.8) = in with s = 1.2: the nearest copy shortcut
    case((2, 2, 7, 6), scale_factor=(0.5, 0.7), mode="nearest-exact"),  # downsampling: some inputs get no gradient
    case((2, 2, 3, 4), scale_factor=(2.5, 1.5), mode="nearest-exact"),
    case((2, 3, 4), scale_factor=2.0, mode="linear"),  # weights 1/4, 3/4 and the clamped borders
    case((2, 2, 3, 4), size=(5, 7), mode="bilinear", align_corners=True),
    case((2, 2, 4, 3), scale_factor=(1.5, 2.25), mode="bilinear"),  # the given s is used, not in / out
    case((2, 2, 5, 6), size=(3, 6), mode="bilinear"),  # shrinking one axis, an unchanged (copied) one
    case((1, 2, 3, 2, 4), scale_factor=(2, 1.5, 0.75), mode="trilinear"),
    case((1, 2, 2, 3, 2), size=(3, 4, 1), mode="trilinear", align_corners=True),  # out = 1: ratio 0
    case((1, 3, 2, 2, 2), scale_factor=2, mode="nearest"),  # 3-D nearest
    case((2, 4, 3, 3), scale_factor=2, mode="bilinear", channel_axis=-1),  # channels-last
    case((2, 3, 5, 3), size=(4, 3), mode="nearest", channel_axis=-1),
    case((1, 1, 1), size=5, mode="linear"),  # a single input sample
    # zero-size (an empty spatial dim or output is an error, as in PyTorch; PyTorch also refuses no channels)
    case((0, 2, 3, 3), scale_factor=2, mode="bilinear"),  # an empty batch
    case((0, 2, 3), scale_factor=2),  # an empty batch, nearest
    case((0, 2, 2, 2, 3), scale_factor=2, mode="trilinear"),  # an empty batch, 3-D
    case((0, 3, 3, 2), scale_factor=2, mode="nearest", channel_axis=-1),  # an empty batch, channels-last
    case((2, 0, 3, 3), size=(5, 4), mode="bilinear"),  # no channels
    case((2, 0, 3), scale_factor=1.5, mode="nearest-exact"),  # no channels, nearest-exact
    case((2, 3, 3, 0), size=(4, 5), mode="bilinear", align_corners=True, channel_axis=-1),  # no channels, last
)


def sample_upsample(draw: Draw) -> Case:
    """1 to 3 spatial dims of 1 to 5; nearest, nearest-exact or the linear mode of that rank; a size or a scale."""
    n = draw.integer(1, 3)
    spatial = tuple(draw.integer(1, 5 if n < 3 else 3) for _ in range(n))
    mode = draw.choice(["nearest", "nearest-exact", LINEAR_MODE[n]])
    options = {"mode": mode}
    if mode == LINEAR_MODE[n] and draw.choice([False, True]):
        options["align_corners"] = True
    if draw.choice([False, True]):
        options["size"] = tuple(draw.integer(1, 7 if n < 3 else 4) for _ in range(n))
    else:
        scales = [0.5, 0.75, 1.0, 1.2, 1.5, 2.0, 2.1, 2.5, 3.0]
        drawn = [draw.choice(scales) for _ in spatial]
        options["scale_factor"] = tuple(s if i * s >= 1 else 1.0 for i, s in zip(spatial, drawn))  # out >= 1
    shape = (draw.integer(1, 2), draw.integer(1, 3), *spatial)
    if draw.choice([False, False, True]):
        return case((shape[0], *shape[2:], shape[1]), channel_axis=-1, **options)
    return case(shape, **options)


UPSAMPLE = op_spec(
    convgrad.upsample,
    autodiff.upsample,
    channel_axis_in_layout(loops.upsample),
    channel_axis_in_layout(loops.upsample_vjp),
    UPSAMPLE_CASES,
    sample_upsample,
    linear_argnums=(0,),
)

SPECS = (UPSAMPLE,)

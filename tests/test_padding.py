"""Facts about convgrad.pad, the padding op behind conv's padding_mode: worked 1-d examples, PyTorch, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convgrad
from convgrad import loops

X = jnp.array([1.0, 2.0, 3.0, 4.0])
G = jnp.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0])  # a cotangent for widths (2, 1): 2 + 4 + 1 samples

# By hand, x = [1, 2, 3, 4] padded by (2, 1); j = q - 2 is the position relative to x:
#   reflect   m = |j| mirrored at both edges: j = -2, -1 -> 2, 1; j = 4 -> 2     y = [3, 2, 1, 2, 3, 4, 3]
#   replicate m = clip(j, 0, 3)                                                  y = [1, 1, 1, 2, 3, 4, 4]
#   circular  m = j mod 4: j = -2, -1 -> 2, 3; j = 4 -> 0                        y = [3, 4, 1, 2, 3, 4, 1]
#   zeros                                                                        y = [0, 0, 1, 2, 3, 4, 0]
# The VJP adds each g[q] onto x[m(q)]. With g = [10, 20, 30, 40, 50, 60, 70] (g_mid = [30, 40, 50, 60]):
#   reflect:   g[0] = 10 -> x[2], g[1] = 20 -> x[1], g[6] = 70 -> x[2]: [30, 60, 130, 60]
#   replicate: g[0] + g[1] = 30 -> x[0], g[6] = 70 -> x[3]:            [60, 40, 50, 130]
#   circular:  g[0] = 10 -> x[2], g[1] = 20 -> x[3], g[6] = 70 -> x[0]: [100, 40, 60, 80]
#   zeros:     the border reaches nothing:                              [30, 40, 50, 60]
WORKED = [
    ("reflect", [3, 2, 1, 2, 3, 4, 3], [30, 60, 130, 60]),
    ("replicate", [1, 1, 1, 2, 3, 4, 4], [60, 40, 50, 130]),
    ("circular", [3, 4, 1, 2, 3, 4, 1], [100, 40, 60, 80]),
    ("zeros", [0, 0, 1, 2, 3, 4, 0], [30, 40, 50, 60]),
]


@pytest.mark.parametrize(("mode", "y", "dx"), WORKED, ids=[w[0] for w in WORKED])
def test_worked_1d_example(mode, y, dx):
    """Forward and VJP of the hand-computed example, from the op and from the loop reference."""
    out, vjp = jax.vjp(lambda x: convgrad.pad(x, [(2, 1)], mode), X)
    np.testing.assert_array_equal(out, y)
    np.testing.assert_array_equal(vjp(G)[0], dx)
    np.testing.assert_array_equal(loops.pad(X, [(2, 1)], mode), y)
    np.testing.assert_array_equal(loops.pad_vjp(X, G, [(2, 1)], mode)[0], dx)


def test_negative_zeros_widths_crop_and_their_vjp_pads_zeros_back():
    """pad([1, 2, 3, 4], (-1, 2)) = [2, 3, 4, 0, 0]; the cotangent of x[0], which was cropped, is 0."""
    out, vjp = jax.vjp(lambda x: convgrad.pad(x, [(-1, 2)]), X)
    np.testing.assert_array_equal(out, [2, 3, 4, 0, 0])
    np.testing.assert_array_equal(vjp(jnp.array([1.0, 2.0, 3.0, 4.0, 5.0]))[0], [0, 1, 2, 3])


def test_axes_compose_in_2d():
    """Padding two axes is padding one, then the other (replicate's corner takes the corner sample)."""
    x = jnp.arange(6.0).reshape(2, 3)
    y = convgrad.pad(x, [(1, 0), (0, 2)], "replicate")
    np.testing.assert_array_equal(y, [[0, 1, 2, 2, 2], [0, 1, 2, 2, 2], [3, 4, 5, 5, 5]])


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular", "zeros"])
def test_matches_torch_pad_values_and_gradients(mode):
    """torch.nn.functional.pad (the same mode names; zeros is "constant") on a 4-d input, forward and backward."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 4))
    g = rng.standard_normal((2, 3, 5 + 3 + 1, 4 + 2 + 3))
    widths = [(0, 0), (0, 0), (3, 1), (2, 3)]
    y, vjp = jax.vjp(lambda x: convgrad.pad(x, widths, mode), x)
    xt = torch.tensor(x, requires_grad=True)
    torch_mode = "constant" if mode == "zeros" else mode
    yt = torch.nn.functional.pad(xt, (2, 3, 3, 1), mode=torch_mode)  # torch lists the last axis first
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(vjp(g)[0], xt.grad.numpy(), rtol=1e-12)


BAD = [
    ((X, [(1, 1)], "mirror"), ValueError, r"^pad: mode='mirror' is not one of \['zeros', 'reflect'"),
    ((X, [(4, 0)], "reflect"), ValueError, r"^pad: mode='reflect' needs widths < the axis size 4, got pad_width"),
    ((X, [(0, 5)], "circular"), ValueError, r"^pad: mode='circular' needs widths <= the axis size 4 \(one wrap\)"),
    ((X, [(-1, 0)], "replicate"), ValueError, r"^pad: mode='replicate' needs widths >= 0, got pad_width=\[\(-1, 0\)\]"),
    ((jnp.zeros(0), [(1, 0)], "replicate"), ValueError, r"^pad: mode='replicate' cannot pad an empty axis"),
    ((X, [(-3, -2)], "zeros"), ValueError, r"^pad: pad_width=\[\(-3, -2\)\] along axis 0 of size 4 crops more"),
    ((X, [(1, 1), (1, 1)], "zeros"), ValueError, r"^pad: pad_width must be an int, 1 int, 1 \(lo, hi\) int pair"),
    ((X, [(1.5, 1)], "zeros"), TypeError, r"^pad: pad_width must be .* got pad_width=\[\(1.5, 1\)\]"),
    ((X.astype(jnp.int32), [(1, 1)], "zeros"), TypeError, r"^pad: x must have a real floating dtype"),
]


@pytest.mark.parametrize(("args", "error", "message"), BAD, ids=[m[:40] for *_, m in BAD])
def test_bad_input_raises_a_clear_error(args, error, message):
    with pytest.raises(error, match=message):
        convgrad.pad(*args)

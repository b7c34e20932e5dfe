"""Oversized requests, in a fresh process whose address space is capped (``resource.setrlimit(RLIMIT_AS, ...)``).

A convolution whose padding and dilation are far wider than its input must not build the
padded input (it has a 2x2 output; lax and the textbook formulation compute it in kilobytes).
A request whose output cannot fit in memory is a ``ValueError`` naming the argument and the
byte count, raised before XLA sees it (XLA's own failure is an allocation error naming neither).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 6 * 2**30  # bytes of address space: jax and XLA use about 1.5 GiB here

SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
    import jax, jax.numpy as jnp, numpy as np
    import convgrad
    from jax import lax

    def outcome(f):
        try:
            out = f()
            return {{"ok": [np.asarray(a, np.float64).tolist() for a in jax.tree.leaves(out)]}}
        except ValueError as error:
            return {{"ValueError": str(error)}}
        except Exception as error:  # what XLA raises, for the record
            return {{type(error).__name__: str(error)[:300]}}

    print(json.dumps(outcome({call})))
    """
)


def _run(call: str) -> dict:
    script = SCRIPT.format(limit=LIMIT, call=call)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


WIDE = "jnp.arange(4.0).reshape(1, 1, 2, 2), jnp.arange(9.0).reshape(1, 1, 3, 3)"


@pytest.mark.parametrize("formulation", ["auto", "im2col", "textbook"])
def test_a_dilation_and_padding_far_wider_than_the_input_computes(formulation):
    """dilation 10**6 and padding 10**6 around a 2x2 input: only the centre tap lands on the input, so
    y = x * w[1, 1] = 4 x (2x2), dx = 4 g, and dw is zero but at the centre, sum(x g) = 6 for g = ones."""
    result = _run(
        f"""lambda: jax.vjp(lambda x, w: convgrad.conv(x, w, dilation=10**6, padding=10**6,
                                formulation={formulation!r}), {WIDE})[1](jnp.ones((1, 1, 2, 2)))"""
    )
    dx, dw = result["ok"]
    assert dx == [[[[4.0, 4.0], [4.0, 4.0]]]]
    assert dw == [[[[0, 0, 0], [0, 6.0, 0], [0, 0, 0]]]]
    forward = _run(f"lambda: convgrad.conv({WIDE}, dilation=10**6, padding=10**6, formulation={formulation!r})")
    assert forward["ok"] == [[[[[0.0, 4.0], [8.0, 12.0]]]]]


OVERSIZED = [
    ("convgrad.conv(jnp.ones((1, 1, 3, 3)), jnp.ones((1, 1, 3, 3)), padding=10**6)", r"padding=1000000 .* bytes"),
    (
        "convgrad.conv(jnp.ones((1, 1, 3, 3)), jnp.ones((1, 1, 3, 3)), padding=10**6, padding_mode='replicate')",
        r"padding=1000000 makes the padded input \(1, 1, 2000003, 2000003\) float32, 16000048000036 bytes",
    ),
    ("convgrad.conv_transpose(jnp.ones((1, 1, 5000, 5000)), jnp.ones((1, 1, 2, 2)), stride=10**4)", r"stride=10000 "),
    (
        "convgrad.lax.conv_general_dilated(jnp.ones((1, 1, 9, 9)), jnp.ones((1, 1, 2, 2)), (1, 1), [(0, 0)] * 2,"
        " lhs_dilation=(10**6, 10**6))",
        r"lhs_dilation=\(1000000, 1000000\) .* bytes",
    ),
    ("convgrad.pad(jnp.ones((3, 3)), [(10**7, 0), (0, 10**7)])", r"pad_width=\[\(10000000, 0\), \(0, 10000000\)\]"),
]


@pytest.mark.parametrize(("call", "message"), OVERSIZED, ids=["conv", "conv-replicate", "transpose", "lax", "pad"])
def test_an_output_larger_than_memory_is_a_value_error(call, message):
    import re

    result = _run(f"lambda: {call}")
    assert "ValueError" in result, result
    assert re.search(message, result["ValueError"]), result["ValueError"]
    assert re.search(r"more than the \d+ bytes of memory this process can use", result["ValueError"])

"""The README's examples run as written (doctest blocks compare their printed output)."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import jax
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("document", ["README.md", "docs/derivations.md"])
def test_doctest_blocks(document):
    with jax.enable_x64(False):  # the examples show the default float32
        failures, attempted = doctest.testfile(
            str(ROOT / document), module_relative=False, optionflags=doctest.ELLIPSIS
        )
    assert attempted > 0 and failures == 0


@pytest.mark.parametrize("document", ["README.md"])
def test_code_blocks_run(document):
    blocks = [b for b in _python_blocks(ROOT / document) if ">>>" not in b]
    assert blocks
    with jax.enable_x64(False):
        for block in blocks:
            exec(compile(block, document, "exec"), {})


OP_MODULES = sorted(p.stem for p in (ROOT / "convgrad" / "ops").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", OP_MODULES)
def test_op_docstring_examples_run(module):
    """Every ``>>>`` example in the op modules' docstrings runs and prints what it shows."""
    import importlib

    with jax.enable_x64(False):
        failures, _ = doctest.testmod(importlib.import_module(f"convgrad.ops.{module}"), optionflags=doctest.ELLIPSIS)
    assert failures == 0

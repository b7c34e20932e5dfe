"""What check_vjp detects: one wrong element among 10,000, per dtype and mode, as docs/checker.md's table states.

The planted bug is in ``tests/checker_detection.py``. Each entry of the table is the
smallest relative error on element 1234 that is detected: 1.25 times it must be, 0.8
times it must not. The jacobian mode differentiates all 10,000 elements (2 evaluations
each), about 10x slower under the suite's XLA flags (``conftest.py``), so its entries run
in one process with XLA's default flags, for float32 and bfloat16 on the median element;
``python -m tests.checker_detection`` re-measures the whole table.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.checker_detection import INDEX, check, detects
from tests.compile_flags import with_xla_defaults

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- detection table"


def _table(document: str) -> dict[tuple[str, str, str], float]:
    """``{(dtype, mode, element): smallest detected relative error}`` from the table after the marker."""
    block = (ROOT / document).read_text().split(MARKER, 1)[1].split("\n\n", 1)[0]
    entries = {}
    for line in block.splitlines()[1:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("dtype", "---"):
            continue
        dtype, mode, median, largest = cells
        for element, text in (("median", median), ("largest", largest)):
            entries[(dtype, mode, element)] = float(text.rstrip("%")) / 100
    return entries


TABLE = _table("docs/checker.md")
CHECKED = [key for key in TABLE if key[1] != "jacobian"]
JACOBIAN_CHECKED = [("float32", "jacobian", "median"), ("bfloat16", "jacobian", "median")]


def _in_a_process_with_default_flags(*queries: tuple[str, str, str, float]) -> list[str | None]:
    """``failure(...)`` of each ``(dtype, mode, element, error)``, computed with XLA's default flags."""
    env = with_xla_defaults(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    arguments = [":".join(map(str, query)) for query in queries]
    done = subprocess.run(
        [sys.executable, "-m", "tests.checker_detection", "--detects", *arguments],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line)["message"] for line in done.stdout.splitlines()]


def test_the_table_covers_every_dtype_mode_and_element():
    dtypes, modes, elements = ({key[i] for key in TABLE} for i in range(3))
    assert dtypes == {"float32", "float64", "bfloat16", "float16"}
    assert modes == {"directions", "jacobian", "reference"}
    assert elements == {"median", "largest"}
    assert len(TABLE) == 24


def test_the_readme_shows_the_same_table():
    assert _table("README.md") == TABLE


@pytest.mark.parametrize(("dtype", "mode", "element"), CHECKED, ids=["-".join(key) for key in CHECKED])
def test_the_documented_error_is_the_smallest_detected(dtype, mode, element):
    smallest = TABLE[(dtype, mode, element)]
    assert detects(dtype, mode, element, 1.25 * smallest), f"{1.25 * smallest:.3g} missed"
    assert not detects(dtype, mode, element, 0.8 * smallest), f"{0.8 * smallest:.3g} detected: the table is stale"


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16", "float16"])
@pytest.mark.parametrize("mode", ["directions", "reference"])
def test_the_right_vjp_passes(dtype, mode):
    check(dtype, mode, "median", 0.0)


def test_the_jacobian_mode_entries_and_the_right_vjp():
    """In one process with XLA's default flags: each entry brackets the threshold, the right VJP passes."""
    queries = [(*key, factor * TABLE[key]) for key in JACOBIAN_CHECKED for factor in (1.25, 0.8)]
    queries += [("float32", "jacobian", "median", 0.0), ("bfloat16", "jacobian", "largest", 0.1)]
    answers = dict(zip(queries, _in_a_process_with_default_flags(*queries)))
    for key in JACOBIAN_CHECKED:
        assert answers[(*key, 1.25 * TABLE[key])] is not None, f"{key}: {1.25 * TABLE[key]:.3g} missed"
        assert answers[(*key, 0.8 * TABLE[key])] is None, f"{key}: {0.8 * TABLE[key]:.3g} detected: the table is stale"
    assert answers[("float32", "jacobian", "median", 0.0)] is None
    located = answers[("bfloat16", "jacobian", "largest", 0.1)]
    assert located is not None and re.search(rf"1 / 10000 elements mismatched(.|\n)*at index \({INDEX},\)", located)


def test_one_percent_on_one_element_of_10000_in_float32_is_found_by_default_and_located():
    with pytest.raises(AssertionError, match=r"argument 0 \(x\): VJP vs central finite differences") as failure:
        check("float32", "directions", "median", 0.01)
    assert re.search(rf"the most error sits at index \({INDEX},\)", str(failure.value)), str(failure.value)


def test_one_wrong_element_of_10000_in_bfloat16_is_found_and_located():
    """10% on the largest element: the normwise bfloat16 tolerance (8% of the largest) lets it show."""
    with pytest.raises(AssertionError, match=rf"1 / 10000 elements mismatched(.|\n)*at index \({INDEX},\)"):
        check("bfloat16", "reference", "largest", 0.1)

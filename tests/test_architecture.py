"""The structure of docs/architecture.md holds: no import cycle, imports only downward, docstrings, layout tables.

The import tests read ``convgrad/`` with :mod:`ast` (nothing is imported or compiled); the
docstring tests import the public ops (no compilation) to ask :mod:`doctest` what it collects.
"""

from __future__ import annotations

import ast
import dataclasses
import doctest
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "convgrad"

# The layers of docs/architecture.md, bottom to top, written once: group -> (its modules, the
# groups it may import besides itself). A module is named exactly, or by ``pkg.*`` (every
# module under ``pkg`` that no exact name claims). docs/architecture.md's table "Who may
# import whom" must say the same (test_the_layer_table_is_the_one_in_the_docs).
LAYERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "support": (("convgrad.files", "convgrad.progress", "convgrad.parallel", "convgrad.data"), ()),
    "geometry": (("convgrad.ops.geometry",), ()),
    "rules": (
        ("convgrad.ops.arguments", "convgrad.ops.precision", "convgrad.ops.replicas", "convgrad.ops.batch_chunks"),
        ("geometry",),
    ),
    "ops": (("convgrad.ops", "convgrad.ops.*"), ("geometry", "rules")),
    "api": (("convgrad", "convgrad.lax"), ("ops",)),
    "autodiff": (("convgrad.autodiff", "convgrad.autodiff.*"), ("geometry", "rules")),
    "loops": (("convgrad.loops", "convgrad.loops.*"), ("geometry",)),
    "registry": (
        ("convgrad.registry", "convgrad.registry.*"),
        ("geometry", "rules", "ops", "api", "autodiff", "loops"),
    ),
    "checker": (("convgrad.testing", "convgrad.testing.*"), ("geometry", "rules")),
    "verify": (("convgrad.verify", "convgrad.testing.strategies"), ("support", "registry", "checker")),
    "use": (
        ("convgrad.models", "convgrad.train", "convgrad.bench"),
        ("support", "geometry", "rules", "ops", "api", "autodiff", "checker"),
    ),
    "front": (
        ("convgrad.cli", "convgrad.__main__"),
        ("support", "geometry", "rules", "ops", "api", "autodiff", "loops", "registry", "checker", "verify", "use"),
    ),
}


@dataclasses.dataclass(frozen=True)
class Import:
    """One import statement's edge: ``source`` imports ``target`` (both dotted module names)."""

    source: str
    target: str
    line: int
    in_function: bool

    def __str__(self) -> str:
        where = "inside a function" if self.in_function else "at module level"
        return f"{self.source} -> {self.target} (line {self.line}, {where})"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(root: Path) -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def import_edges(root: Path) -> list[Import]:
    """Every import of one of ``root``'s own modules, by every module under ``root``.

    ``from pkg import name`` imports the submodule ``pkg.name`` if there is one, else ``pkg``
    itself. A package's ``__init__`` that a submodule's import runs first is not an edge
    (Python imports it whether or not the submodule needs it).
    """
    modules = package_modules(root)
    return [edge for source, path in modules.items() for edge in _module_imports(source, path, modules)]


def _module_imports(source: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]
    edges = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for target in _import_targets(child, package, modules):
                    if target in modules and target != source:
                        edges.append(Import(source, target, child.lineno, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(), str(path)), False)
    return edges


def _import_targets(node: ast.Import | ast.ImportFrom, package: str, modules: dict[str, Path]) -> list[str]:
    """The modules one statement imports (``package``: the one a relative import starts from)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parent = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*parent, *([node.module] if node.module else [])])
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]


def find_cycle(edges: list[Import]) -> list[Import] | None:
    """One cycle of the directed graph ``edges`` as its list of edges, or ``None`` (depth-first search)."""
    graph: dict[str, list[Import]] = {}
    for edge in edges:
        graph.setdefault(edge.source, []).append(edge)
    state: dict[str, str] = {}  # "open" while on the search path, "done" after
    path: list[Import] = []

    def search(node: str) -> list[Import] | None:
        state[node] = "open"
        for edge in graph.get(node, []):
            if state.get(edge.target) == "open":  # on the path: the cycle runs from it back to it
                start = next(i for i, e in enumerate(path) if e.source == edge.target)
                return [*path[start:], edge]
            if edge.target not in state:
                path.append(edge)
                found = search(edge.target)
                if found:
                    return found
                path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = search(node)
            if found:
                return found
    return None


def layer_of(module: str) -> str | None:
    """The group that names ``module`` exactly, else the one whose ``pkg.*`` is the longest prefix of it."""
    best, best_length = None, -1
    for group, (patterns, _) in LAYERS.items():
        for pattern in patterns:
            if pattern == module:
                return group
            if pattern.endswith(".*") and module.startswith(pattern[:-1]) and len(pattern) > best_length:
                best, best_length = group, len(pattern)
    return best


EDGES = import_edges(PACKAGE)


def test_no_import_cycle_at_module_level():
    cycle = find_cycle([e for e in EDGES if not e.in_function])
    assert cycle is None, "import cycle:\n  " + "\n  ".join(map(str, cycle))


def test_no_function_level_import_closes_a_cycle():
    cycle = find_cycle(EDGES)
    assert cycle is None, "import cycle (move code, do not hide the import in a function):\n  " + "\n  ".join(
        map(str, cycle)
    )


def test_cycle_finder_sees_a_cycle_closed_inside_a_function(tmp_path):
    """The two tests above can fail: a planted cycle whose closing import sits in a function is found."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("from .c import f\n")  # a relative import resolves too
    (package / "c.py").write_text("def f():\n    from pkg import a\n")
    edges = import_edges(package)
    assert find_cycle([e for e in edges if not e.in_function]) is None
    cycle = find_cycle(edges)
    assert cycle is not None and {e.source for e in cycle} == {"pkg.a", "pkg.b", "pkg.c"}
    assert [str(e) for e in cycle if e.in_function] == ["pkg.c -> pkg.a (line 2, inside a function)"]


def test_every_module_has_a_layer():
    assert [m for m in package_modules(PACKAGE) if layer_of(m) is None] == []


def test_layers_point_down():
    """A group may import only groups listed before it in LAYERS: nothing imports upward."""
    order = list(LAYERS)
    upward = [(g, a) for g, (_, allowed) in LAYERS.items() for a in allowed if order.index(a) >= order.index(g)]
    assert upward == []


def test_imports_follow_the_layers():
    forbidden = [
        f"{edge}: {layer_of(edge.source)} may not import {layer_of(edge.target)}"
        for edge in EDGES
        if layer_of(edge.target) not in (layer_of(edge.source), *LAYERS[layer_of(edge.source)][1])
    ]
    assert forbidden == [], "\n".join(forbidden)


def _section(markdown: str, heading: str) -> str:
    match = re.search(rf"^{re.escape(heading)}\n(.*?)(?=^#{{1,{heading.count('#')}}} |\Z)", markdown, re.M | re.S)
    assert match, f"no section {heading!r}"
    return match.group(1)


def test_the_layer_table_is_the_one_in_the_docs():
    table = _section((ROOT / "docs" / "architecture.md").read_text(), "## Who may import whom")
    rows = [line for line in table.splitlines() if line.startswith("| ")][2:]  # after the header and rule
    documented = {}
    for row in rows:
        group, modules, allowed = (cell.strip() for cell in row.strip("|").split("|"))
        documented[group.strip("*")] = (
            tuple(re.findall(r"`([^`]+)`", modules)),
            () if allowed == "nothing" else tuple(a.strip() for a in allowed.split(",")),
        )
    assert documented == LAYERS
    assert list(documented) == list(LAYERS)  # in the same order, bottom to top


def _public_ops() -> list[tuple[str, object]]:
    import convgrad
    import convgrad.lax

    ops = [(name, getattr(convgrad, name)) for name in convgrad.__all__ if name != "lax"]
    return ops + [(f"lax.{name}", getattr(convgrad.lax, name)) for name in convgrad.lax.__all__]


PUBLIC_OPS = _public_ops()


@pytest.mark.parametrize("name,op", PUBLIC_OPS, ids=[name for name, _ in PUBLIC_OPS])
def test_public_op_docstring_ends_with_raises_examples_references(name, op):
    """The docstring's last three sections are ``Raises:``, ``Examples:`` (with ``>>>``), ``References:``, not empty."""
    doc = inspect.getdoc(op) or ""
    parts = re.split(r"^([A-Z][A-Za-z ]*):[ \t]*$", doc, flags=re.M)
    sections = dict(zip(parts[1::2], parts[2::2]))
    assert parts[1::2][-3:] == ["Raises", "Examples", "References"], f"{name}: sections {parts[1::2]}"
    assert sections["Raises"].strip() and sections["References"].strip()
    assert ">>>" in sections["Examples"]


@pytest.mark.parametrize("name,op", PUBLIC_OPS, ids=[name for name, _ in PUBLIC_OPS])
def test_public_op_examples_are_collected_by_test_docs(name, op):
    """tests/test_docs.py runs ``doctest.testmod`` on each ``convgrad/ops/*.py``: it must find this op's examples."""
    module = op.__module__
    assert module.startswith("convgrad.ops.") and (PACKAGE / "ops" / f"{module.split('.')[-1]}.py").exists()
    found = {test.name: len(test.examples) for test in doctest.DocTestFinder().find(importlib.import_module(module))}
    assert found.get(f"{module}.{op.__name__}", 0) >= 1, f"{name}: doctest collects {sorted(found)}"


LAYOUT_DOCUMENTS = {"README.md": "## Layout", "docs/architecture.md": None}


def _layout_text(document: str) -> str:
    text = (ROOT / document).read_text()
    heading = LAYOUT_DOCUMENTS[document]
    return _section(text, heading) if heading else text


def _named_paths(text: str) -> set[str]:
    """Paths from the repository root: code spans with a ``/`` or ending ``.py``, and relative link targets."""
    spans = {s for s in re.findall(r"`([^`\s]+)`", text) if "/" in s or s.endswith(".py")}
    links = {t for t in re.findall(r"\]\(([^)#\s]+)\)", text) if not re.match(r"[a-z]+:", t)}
    return {p for p in spans | links if "<" not in p and not p.startswith(("http", "--"))}


@pytest.mark.parametrize("document", list(LAYOUT_DOCUMENTS))
def test_layout_names_every_module_file(document):
    named = _named_paths(_layout_text(document))
    files = sorted(str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py"))
    assert [f for f in files if f not in named] == []


@pytest.mark.parametrize("document", list(LAYOUT_DOCUMENTS))
def test_layout_paths_exist(document):
    named = _named_paths(_layout_text(document))
    assert named and sorted(p for p in named if not (ROOT / p).exists()) == []

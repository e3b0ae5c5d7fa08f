"""The import graph of ``slidestore`` has no cycles.

Built from the source with ``ast`` (nothing is imported): an edge ``a -> b`` for every
module-level import in ``a`` of a module ``b`` of the package. Imports inside functions
are not edges (they run later: ``Slide.pyramid`` imports the pyramid when used).
Importing ``p.q.m`` also runs the ``__init__`` of ``p.q``, so that is an edge too, except
to the importer's own enclosing packages (a package importing its parts is the layout).

Two graphs: what runs at import time (``if TYPE_CHECKING:`` blocks skipped), which must
be acyclic or imports fail by order, and the design graph with the ``TYPE_CHECKING``
imports, where a cycle is two modules that know each other (a back-reference instead of
a narrow collaborator), which issue 17 removes.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import slidestore

ROOT: Final = Path(slidestore.__file__).parent

KNOWN_CYCLES: Final[frozenset[frozenset[str]]] = frozenset()
"""Cycles tolerated for now: none (issue 17 broke the last ones)."""


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(
    body: list[ast.stmt], *, typing: bool
) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements outside functions; those under ``TYPE_CHECKING`` with ``typing``."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if typing or not _is_type_checking(node.test):
                yield from _module_level_imports(node.body, typing=typing)
            yield from _module_level_imports(node.orelse, typing=typing)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _module_level_imports(block, typing=typing)
            for handler in node.handlers:
                yield from _module_level_imports(handler.body, typing=typing)
        elif isinstance(node, ast.With | ast.ClassDef):
            yield from _module_level_imports(node.body, typing=typing)


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def import_graph(*, typing: bool = False) -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        targets: set[str] = set()
        for node in _module_level_imports(ast.parse(path.read_text()).body, typing=typing):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            else:
                module = _resolve(name, is_package, node)
                targets.add(module)
                targets.update(f"{module}.{alias.name}" for alias in node.names)
        for target in targets:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in modules and prefix not in ancestors:
                    graph[name].add(prefix)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_package() -> None:
    graph = import_graph()
    assert "slidestore.geometry" in graph["slidestore.reading.slide"]
    assert "slidestore.reading.slide" in graph["slidestore.reading"]
    # Importing a package's module runs the package's __init__: an edge to it.
    assert "slidestore.pyramid" in graph["slidestore.protocols.deepzoom.generator"]
    # ``Slide.pyramid`` imports the pyramid inside a function, under TYPE_CHECKING for
    # its annotations: an edge of the design graph only.
    assert "slidestore.pyramid" not in graph["slidestore.reading.slide"]
    assert "slidestore.pyramid" in import_graph(typing=True)["slidestore.reading.slide"]


def test_cycle_detection_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset({"a", "b", "c"})]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_slidestore_imports_have_no_cycles() -> None:
    assert [sorted(c) for c in cycles(import_graph())] == []


def test_slidestore_modules_do_not_know_each_other() -> None:
    found = cycles(import_graph(typing=True))
    unexpected = [sorted(c) for c in found if c not in KNOWN_CYCLES]
    assert unexpected == []

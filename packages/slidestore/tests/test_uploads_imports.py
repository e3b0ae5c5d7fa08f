"""The modules of ``slidestore.uploads`` import each other without a cycle (the appender
gets what it needs from the session store as a ``SessionLedger``, not by importing it)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import slidestore.uploads

PACKAGE = "slidestore.uploads"


def imports_within_package(path: Path) -> set[str]:
    """The ``slidestore.uploads`` modules ``path`` imports, at any level (also under
    ``TYPE_CHECKING``: a cycle there still couples the two modules)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name.startswith(f"{PACKAGE}."))
    return found


def test_no_import_cycle_in_the_uploads_package() -> None:
    directory = Path(slidestore.uploads.__file__).parent
    modules = {
        f"{PACKAGE}.{path.stem}": path for path in directory.glob("*.py") if path.stem != "__init__"
    }
    assert {"slidestore.uploads.manager", "slidestore.uploads.appender"} <= modules.keys()
    graph = {name: imports_within_package(path) & modules.keys() for name, path in modules.items()}
    # The walk does see imports: the store hands out appenders.
    assert "slidestore.uploads.appender" in graph["slidestore.uploads.manager"]
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError on a cycle
    assert "slidestore.uploads.manager" not in graph["slidestore.uploads.appender"]

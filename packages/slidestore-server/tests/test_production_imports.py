"""Production code does not import the test kits: what a demo or ``dev-cluster`` needs
(the sample slide's location, free ports, the process launcher) lives in production
modules, and the kits re-export it."""

from __future__ import annotations

import ast
from pathlib import Path

import labportal
import slidestore
import slidestore_server

KITS = ("slidestore.testing", "slidestore_server.testing")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _is_kit(name: str) -> bool:
    # slidestore_server.testing_cluster / testing_coordinator are kits too.
    return any(name == kit or name.startswith((kit + ".", kit + "_")) for kit in KITS)


def _production_modules() -> list[Path]:
    modules: list[Path] = []
    for package in (slidestore, slidestore_server, labportal):
        root = Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            relative = path.relative_to(root.parent).with_suffix("").as_posix().replace("/", ".")
            if not _is_kit(relative):
                modules.append(path)
    return modules


def test_no_production_module_imports_a_test_kit() -> None:
    modules = _production_modules()
    assert len(modules) > 150
    offenders = {
        str(path): sorted(name for name in _imports(path) if _is_kit(name))
        for path in modules
        if any(_is_kit(name) for name in _imports(path))
    }
    assert offenders == {}
    # The check can fail.
    assert _is_kit("slidestore.testing.paths") and _is_kit("slidestore_server.testing_cluster")
    assert not _is_kit("slidestore.datapaths")


def test_the_kits_name_the_production_helpers() -> None:
    from slidestore import datapaths, ports
    from slidestore.testing import paths as kit_paths
    from slidestore.testing import ports as kit_ports
    from slidestore_server import launcher
    from slidestore_server import testing as kit_servers

    assert kit_paths.sample_slide_path is datapaths.sample_slide_path
    assert kit_ports.free_port is ports.free_port
    assert kit_servers.NodeProcess is launcher.NodeProcess

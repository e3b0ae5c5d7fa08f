"""The portal package installs from the workspace and reaches the library (its only way to slides)."""

from __future__ import annotations

import importlib.metadata

import labportal
import slidestore


def test_installed_with_its_dependency_on_the_library() -> None:
    assert labportal.__version__ == importlib.metadata.version("labportal")
    requires = importlib.metadata.requires("labportal") or []
    assert any(r.startswith("slidestore") for r in requires)
    assert slidestore.__version__

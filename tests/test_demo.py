"""The README's demo command really starts a node that serves the sample slide."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from slidestore_server.testing import free_port


def test_demo_serves_every_protocol(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "slidestore_server.demo",
            "--check",
            "--data-dir",
            str(tmp_path / "node"),
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("metadata", "DeepZoom (OpenSeadragon)", "a DeepZoom tile", "IIIF info.json"):
        assert f"checked {name}: HTTP 200" in result.stdout

"""The README's demo command really starts a node that serves the sample slide, or a
generated one when no sample slide is there (a clone without ``../shared/data``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import slidestore
from slidestore_server.testing import free_port


def run_demo_check(tmp_path: Path, env: dict[str, str] | None = None) -> str:
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
        timeout=180,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_demo_serves_every_protocol(tmp_path: Path) -> None:
    stdout = run_demo_check(tmp_path)
    assert "(the sample slide)" in stdout
    for name in ("metadata", "DeepZoom (OpenSeadragon)", "a DeepZoom tile", "IIIF info.json"):
        assert f"checked {name}: HTTP 200" in stdout


def test_without_a_sample_slide_the_demo_generates_one(tmp_path: Path) -> None:
    """The sample lookup pointed at an empty folder (as on a clone without ../shared/data)."""
    empty = tmp_path / "no-shared-data"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "SLIDESTORE_SAMPLE_SLIDE"}
    env["SLIDESTORE_TEST_DATA"] = str(empty)
    stdout = run_demo_check(tmp_path, env)
    generated = tmp_path / "slides" / "generated-demo-slide.svs"
    assert f"slide: {generated} (generated: no sample slide found" in stdout
    assert "serving generated-demo-slide.svs" in stdout
    for name in ("metadata", "a DeepZoom tile", "IIIF info.json", "a IIIF region"):
        assert f"checked {name}: HTTP 200" in stdout
    with slidestore.open_slide(generated) as slide:  # a realistic slide: Aperio, levels
        assert slide.metadata.vendor == "aperio"
        assert slide.level_count >= 3 and slide.dimensions[0] >= 4096

"""``python -m labportal.demo --check``: the whole system (coordinator, 3 nodes, portal) comes
up, the sample slide is seeded and replicated 3 times, a tissue task runs on it, the checks
pass and nothing is left running (the portal's Dask workers included); a second run on the same data directory reuses what the first created."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .server import free_port

pytestmark = pytest.mark.timeout(200)


def run_demo(data_dir: Path) -> tuple[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABPORTAL_", "SLIDESTORE_"))}
    for name in ("SLIDESTORE_TEST_DATA", "SLIDESTORE_SAMPLE_SLIDE"):
        if name in os.environ:
            env[name] = os.environ[name]
    started = time.monotonic()
    command = [sys.executable, "-m", "labportal.demo", "--check", "--data-dir", str(data_dir)]
    result = subprocess.run(
        [*command, "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    took = time.monotonic() - started
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout, took


def field(out: str, name: str) -> str:
    found = re.search(rf"^  {name} +(.+)$", out, re.M)
    assert found, f"no {name!r} line in:\n{out}"
    return found[1]


def test_demo_check_twice_on_one_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    first, took = run_demo(data)
    portal = field(first, "portal")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", portal)
    assert re.fullmatch(r"demo@example\.org / \S{10,}", field(first, "login"))
    case = field(first, "case")
    viewer = field(first, "viewer")
    assert re.fullmatch(rf"{portal}/cases/[0-9a-f-]{{36}}", case)
    assert re.fullmatch(rf"{portal}/materials/[0-9a-f-]{{36}}/view", viewer)
    assert field(first, "seeded") == "account, team, case, material, tissue task"
    assert re.search(r"checked +tissue task [0-9a-f-]{36}: [1-9]\d* polygons", first), first
    assert "material ready with 3 replicas on 3 nodes" in first
    assert first.count(": 200 image/jpeg") == 3, first
    assert "demo check passed" in first
    assert took < 90, f"the demo check took {took:.0f}s"

    second, _ = run_demo(data)
    assert field(second, "seeded").startswith("nothing")
    assert field(second, "login") == field(first, "login")
    # Same case and material (the portal port differs between runs).
    path = re.compile(r"/(cases|materials)/[0-9a-f-]{36}")
    assert path.search(field(second, "case"))[0] == path.search(case)[0]  # type: ignore[index]
    assert path.search(field(second, "viewer"))[0] == path.search(viewer)[0]  # type: ignore[index]
    assert "demo check passed" in second
    with sqlite3.connect(data / "portal.sqlite3") as db:
        counts = [
            db.execute(sql).fetchone()[0]
            for sql in (
                "SELECT count(*) FROM user_account",
                "SELECT count(*) FROM team",
                'SELECT count(*) FROM "case"',
                "SELECT count(*) FROM case_material",
                "SELECT count(*) FROM analysis_task WHERE status = 'succeeded'",
            )
        ]
    assert counts == [1, 1, 1, 1, 1]
    # Every server stopped: no process is left with the data directory in its environment.
    assert not holders(data), f"processes left running: {holders(data)}"


def holders(data: Path) -> list[int]:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if str(data).encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found

"""``slidestore-server dev-cluster``: a coordinator and N nodes that register, printed URLs
and token, and a clean stop on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx


def test_dev_cluster_starts_registers_and_stops_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "cluster"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "slidestore_server.cli",
            "dev-cluster",
            "--nodes",
            "2",
            "--data-dir",
            str(data),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops" in line:
                break
        text = "".join(lines)
        coordinator = re.search(r"coordinator\s+(http://\S+)", text)
        token = re.search(r"admin token\s+(\S+)", text)
        nodes = re.findall(r"node\d+\s+(http://\S+)", text)
        assert coordinator and token and len(nodes) == 2, text
        headers = {"Authorization": f"Bearer {token.group(1)}"}
        alive: list[str] = []
        while time.monotonic() < deadline:
            views = httpx.get(f"{coordinator.group(1)}/v1/nodes", headers=headers).json()
            alive = sorted(v["url"] for v in views if v["state"] == "alive")
            if len(alive) == 2:
                break
            time.sleep(0.2)
        assert alive == sorted(nodes)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        for url in [coordinator.group(1), *nodes]:  # every server is gone
            try:
                httpx.get(f"{url}/healthz", timeout=1)
            except httpx.ConnectError:
                continue
            raise AssertionError(f"{url} still answers after Ctrl-C")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

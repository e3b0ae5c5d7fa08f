"""A real portal process (``labportal serve``) on a loopback port, on a fresh database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from slidestore.testing.ports import free_port

__all__ = ["ServerProcess", "free_port"]


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, database_url: str, log: Path, **env: str) -> ServerProcess:
        port = free_port()
        environ = {
            **os.environ,
            "LABPORTAL_DATABASE_URL": database_url,
            "LABPORTAL_ARGON2_TIME_COST": "1",
            "LABPORTAL_ARGON2_MEMORY_KIB": "1024",
            "LABPORTAL_ARGON2_PARALLELISM": "1",
            "LABPORTAL_REGISTER_MAX_PER_ADDRESS": "100000",
            **env,
        }
        command = [sys.executable, "-m", "labportal.cli", "serve", "--port", str(port), "--migrate"]
        with log.open("wb") as out:
            process = subprocess.Popen(command, env=environ, stdout=out, stderr=subprocess.STDOUT)
        server = cls(f"http://127.0.0.1:{port}", process, log)
        deadline = time.monotonic() + 90  # migrations on a loaded 2-core machine
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"portal exited: {log.read_text()[-3000:]}")
            try:
                if httpx.get(server.url + "/readyz", timeout=1).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        server.stop()
        raise RuntimeError(f"portal did not become ready: {log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

"""Server processes on loopback: the one launcher the demos, ``dev-cluster`` and the test
kits share.

:class:`Process` runs any command in its own session (so it and its workers stop as a
group), with its output in a log file. ``NodeProcess`` starts ``slidestore-server node`` on
a free port, waits until ``/healthz`` answers, and can be killed with any signal and
restarted on the same port and data directory — which is how durability claims are tested.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Self

from slidestore.ports import free_port

__all__ = [
    "CoordinatorProcess",
    "NodeProcess",
    "Process",
    "ServerProcess",
    "free_port",
    "wait_http",
]


def wait_http(
    url: str, *, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Until ``url`` answers below 500 (TimeoutError after ``timeout``; RuntimeError when
    ``proc`` exits first)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status < 500:
                    return
        except Exception as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


def tail(log: Path, chars: int = 1500) -> str:
    """The end of a log, for an error message."""
    try:
        text = log.read_text(errors="replace")[-chars:]
    except OSError:
        text = ""
    return f"its log ({log}) ends with:\n{text}"


class Process:
    """``command`` as a subprocess in its own session, its output appended to ``log``."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.command = command
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """``sig`` to the whole process group (the server's workers too)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float) -> bool:
        """Until it exited (False: still running after ``timeout``); then no worker of its
        group outlives it."""
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        self.signal(signal.SIGKILL)
        self.proc = None
        return True

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        self.signal(signal.SIGTERM)
        if not self.wait(timeout):
            self.signal(signal.SIGKILL)
            self.wait(timeout)


class ServerProcess:
    """A ``slidestore-server <command>`` subprocess with settings passed as env vars."""

    command = "node"

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        settings: dict[str, str | int] | None = None,
        log: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.settings = dict(settings or {})
        self.log = log or self.data_dir.with_name(self.data_dir.name + f"-{self.command}.log")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "SLIDESTORE_DATA_DIR": str(self.data_dir),
                "SLIDESTORE_HOST": "127.0.0.1",
                "SLIDESTORE_PORT": str(self.port),
            }
        )
        env.update({f"SLIDESTORE_{k.upper()}": str(v) for k, v in self.settings.items()})
        return env

    def start(self, *, timeout: float = 30.0) -> Self:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        launched = Process(
            [sys.executable, "-m", "slidestore_server.cli", self.command], self.env(), self.log
        )
        launched.start()
        self.proc = launched.proc
        wait_http(self.url + "/healthz", timeout=timeout, proc=self.proc)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole process group (workers included) and reap on kill."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.proc.wait(timeout=30)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGTERM)
        self.proc = None

    def restart(self) -> Self:
        self.stop()
        return self.start()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.kill(signal.SIGKILL)


class NodeProcess(ServerProcess):
    command = "node"


class CoordinatorProcess(ServerProcess):
    """``slidestore-server coordinator``; pass ``database_url`` in settings for PostgreSQL
    (default: SQLite in ``data_dir``)."""

    command = "coordinator"

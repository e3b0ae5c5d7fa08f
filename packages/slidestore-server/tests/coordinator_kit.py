"""Shared by the coordinator tests: databases (a SQLite file or a fresh PostgreSQL
database per test), coordinator processes, and simulated nodes speaking the wire protocol
over real HTTP."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from slidestore import tokens
from slidestore.cluster.wire import BlobRef, Heartbeat, NodeReport, Register
from slidestore.tokens import Operation
from slidestore_server.testing import CoordinatorProcess

SECRET = tokens.new_secret()
#: What the ``start_node`` fixture (conftest) configures; tests mint tokens with it.
NODE_SECRET = tokens.new_secret()
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
GB = 1 << 30
#: Quick loop and lease for every test; liveness tests add short suspect/dead timeouts.
QUICK = {"loop_interval": 0.1, "lease_seconds": 1.5, "repair_grace": 0.5}
FAST_LIVENESS = {"suspect_after": 0.5, "dead_after": 1.5}


def headers(*ops: Operation) -> dict[str, str]:
    token = tokens.mint(SECRET, ops=set(ops or {Operation.ADMIN}))
    return {"Authorization": f"Bearer {token}"}


async def _pg(statement: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cluster.db'}"
        return
    name = f"cluster_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def start_coordinator(
    tmp_path_factory: pytest.TempPathFactory, database_url: str
) -> Iterator[Callable[..., CoordinatorProcess]]:
    """``start_coordinator(**settings)``: a coordinator process on the test's database."""
    started: list[CoordinatorProcess] = []

    def start(**settings: Any) -> CoordinatorProcess:
        data_dir = tmp_path_factory.mktemp("coordinator") / "data"
        merged = {"secret": SECRET, "database_url": database_url, **QUICK, **settings}
        process = CoordinatorProcess(data_dir, settings=merged)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.kill(signal.SIGKILL)


class FakeNode:
    """A node that only talks to the coordinator: registers and heartbeats on demand."""

    def __init__(
        self,
        coordinator: str,
        node_id: str,
        *,
        url: str | None = None,
        zone: str = "default",
        capacity: int = 100 * GB,
        free: int = 50 * GB,
    ) -> None:
        self.coordinator = coordinator
        self.node_id = node_id
        self.url = url or f"http://127.0.0.1:9/{node_id}"
        self.zone = zone
        self.capacity = capacity
        self.free = free
        self.inventory: dict[str, int] = {}

    def report(self) -> NodeReport:
        return NodeReport(
            capacity_bytes=self.capacity, free_bytes=self.free, used_bytes=self.capacity - self.free
        )

    def register(self) -> httpx.Response:
        msg = Register(
            node_id=self.node_id,
            url=self.url,
            zone=self.zone,
            report=self.report(),
            inventory=tuple(BlobRef(blob_id=b, size=s) for b, s in self.inventory.items()),
        )
        return self._post("/v1/nodes/register", msg)

    def heartbeat(
        self, added: dict[str, int] | None = None, removed: tuple[str, ...] = ()
    ) -> httpx.Response:
        added = added or {}
        self.inventory.update(added)
        for blob_id in removed:
            self.inventory.pop(blob_id, None)
        msg = Heartbeat(
            report=self.report(),
            added=tuple(BlobRef(blob_id=b, size=s) for b, s in added.items()),
            removed=removed,
        )
        return self._post(f"/v1/nodes/{self.node_id}/heartbeat", msg)

    def _post(self, path: str, msg: msgspec.Struct) -> httpx.Response:
        return httpx.post(
            self.coordinator + path,
            content=msgspec.json.encode(msg),
            headers={**headers(Operation.NODE), "Content-Type": "application/json"},
            timeout=10,
        )


class Heartbeats:
    """Keeps fake nodes alive from a thread (every 0.2 s) until closed."""

    def __init__(self, *nodes: FakeNode) -> None:
        self.nodes = list(nodes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for node in self.nodes:
                try:
                    if node.heartbeat().status_code == 404:
                        node.register()
                except httpx.HTTPError:
                    pass

    def add(self, node: FakeNode) -> None:
        """Keep one more (registered) node alive too."""
        self.nodes = [*self.nodes, node]  # a new list: the thread may be iterating the old

    def __enter__(self) -> Heartbeats:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")

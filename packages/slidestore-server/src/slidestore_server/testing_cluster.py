"""Test kit: a whole cluster of real processes on loopback — one coordinator, N nodes.

:class:`Cluster` starts ``slidestore-server coordinator`` (SQLite in its data directory, or
any ``database_url``) and N ``slidestore-server node`` processes registered with it (same
secret, zones ``zone0``, ``zone1``, … unless told otherwise), waits until the coordinator
sees every node alive, and gives fault tests what they need: the coordinator's views
(nodes, blobs, metrics), the sha256 of every replica file on disk, and kill / pause /
resume / restart of any process. Timeouts default to fast ones (:data:`FAST`) so liveness
and repair happen in a second or two instead of ten.

    with Cluster(tmp_path, nodes=4) as cluster:
        with cluster.client() as sdk:
            blob_id = sdk.upload(path, wait="all", progress=False)
        cluster.kill(cluster.holders(blob_id)[0])
        cluster.wait_durable(blob_id, timeout=20)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

import httpx
import msgspec

import slidestore
from slidestore import tokens
from slidestore.blobs import fanout
from slidestore.cluster.model import NodeState
from slidestore.cluster.wire import API, BlobStatus, BlobView, NodeView
from slidestore.tokens import Operation
from slidestore_server.testing import CoordinatorProcess, NodeProcess

SECRET = tokens.new_secret()
PG_ADMIN = os.environ.get("SLIDESTORE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
"""Where :func:`database` creates PostgreSQL databases (env ``SLIDESTORE_TEST_PG``)."""
#: Coordinator timeouts for tests: a silent node is suspect after 1 s and dead after 2.5 s
#: (shorter ones make busy nodes flap on a loaded two-core machine).
FAST: dict[str, str | int | float] = {
    "heartbeat_interval": 0.2,
    "suspect_after": 1.0,
    "dead_after": 2.5,
    "loop_interval": 0.2,
    "lease_seconds": 1.0,
}
#: Node settings for tests: no background prerendering (it would eat the CPU), a small
#: reserve, the background scrubber off unless a test turns it on.
NODE_DEFAULTS: dict[str, str | int | float] = {
    "prerender": "false",
    "reserve_bytes": 64 << 20,
    "scrub_interval_seconds": 0,
}

_nodes_decoder = msgspec.json.Decoder(list[NodeView])
_blob_decoder = msgspec.json.Decoder(BlobView)
_METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


@contextlib.contextmanager
def database(kind: str, directory: Path) -> Iterator[str]:
    """A coordinator database URL: a SQLite file in ``directory``, or (``"postgresql"``) a
    fresh database on :data:`PG_ADMIN`'s server, dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'cluster.db'}"
        return
    if kind != "postgresql":
        raise ValueError(f"database kind must be sqlite or postgresql, got {kind!r}")
    name = f"cluster_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def empty_database(url: str) -> None:
    """Lose a coordinator's database (stop the coordinator first): the SQLite file and its
    WAL are deleted, a PostgreSQL database is dropped and made again, empty."""
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{path}{suffix}")
        return
    name = url.rsplit("/", 1)[1]
    asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))


async def _pg(statement: str) -> None:
    import asyncpg  # only PostgreSQL runs need it

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def eventually[T](check: Callable[[], T], *, timeout: float, interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(interval)
        value = check()
    return value


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class Cluster:
    """A coordinator and ``nodes`` nodes under ``root``; a context manager (SIGKILL on exit).

    ``coordinator_settings`` / ``node_settings`` are merged over :data:`FAST` /
    :data:`NODE_DEFAULTS`; ``per_node`` maps a node index to extra settings of that node
    (a capacity override, a scrub rate, a zone).
    """

    def __init__(
        self,
        root: Path,
        *,
        nodes: int = 4,
        database_url: str | None = None,
        secret: str = SECRET,
        coordinator_settings: dict[str, Any] | None = None,
        node_settings: dict[str, Any] | None = None,
        per_node: dict[int, dict[str, Any]] | None = None,
    ) -> None:
        self.root = Path(root)
        self.secret = secret
        settings: dict[str, Any] = {"secret": secret, **FAST, **(coordinator_settings or {})}
        if database_url:
            settings["database_url"] = database_url
        self.coordinator = CoordinatorProcess(
            self.root / "coordinator", settings=settings, log=self.root / "coordinator.log"
        )
        self.nodes: list[NodeProcess] = []
        # Nodes restore only from the archive they are configured with: the coordinator's.
        archive = {"archive_url": settings["archive_url"]} if "archive_url" in settings else {}
        for index in range(nodes):
            merged: dict[str, Any] = {
                "secret": secret,
                "coordinator_url": self.coordinator.url,
                **archive,
                "zone": f"zone{index}",
                **NODE_DEFAULTS,
                **(node_settings or {}),
                **(per_node or {}).get(index, {}),
            }
            self.nodes.append(
                NodeProcess(
                    self.root / f"node{index}", settings=merged, log=self.root / f"node{index}.log"
                )
            )
        self.paused: set[int] = set()
        self._http = httpx.Client(timeout=10)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, *, timeout: float = 60.0, nodes: Iterable[int] | None = None) -> Self:
        """Start the coordinator and the nodes (``nodes``: only those; start the others
        later with :meth:`restart`, e.g. to have one join a filled cluster)."""
        chosen = [self.nodes[i] for i in nodes] if nodes is not None else self.nodes
        self.coordinator.start(timeout=timeout)
        with ThreadPoolExecutor(len(chosen) or 1) as pool:
            list(pool.map(lambda node: node.start(timeout=timeout), chosen))
        self.wait_alive(timeout=timeout)
        return self

    def close(self) -> None:
        for node in self.nodes:
            if node.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.proc.pid, signal.SIGCONT)
            node.kill(signal.SIGKILL)
        self.coordinator.kill(signal.SIGKILL)
        self._http.close()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- processes -------------------------------------------------------------------------

    def node_id(self, node: int | NodeProcess) -> str:
        """The node's stable id (``data_dir/node_id``, written on its first start)."""
        process = self._node(node)
        return (process.data_dir / "node_id").read_text().strip()

    def index_of(self, node_id: str) -> int:
        for index in range(len(self.nodes)):
            with contextlib.suppress(FileNotFoundError):
                if self.node_id(index) == node_id:
                    return index
        raise KeyError(node_id)

    def _node(self, node: int | NodeProcess) -> NodeProcess:
        return self.nodes[node] if isinstance(node, int) else node

    def running(self, node: int) -> bool:
        return self.nodes[node].proc is not None

    def _up(self, node: int) -> bool:
        return self.running(node) and node not in self.paused

    def kill(self, node: int, sig: int = signal.SIGKILL) -> None:
        """``kill -9`` (by default) the node's whole process group."""
        process = self.nodes[node]
        if node in self.paused and process.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.proc.pid, signal.SIGCONT)
        self.paused.discard(node)
        process.kill(sig)

    def pause(self, node: int) -> None:
        """SIGSTOP: the process stays, silent (no heartbeats, no answers)."""
        self.nodes[node].kill(signal.SIGSTOP)
        self.paused.add(node)

    def resume(self, node: int) -> None:
        self.nodes[node].kill(signal.SIGCONT)
        self.paused.discard(node)

    def restart(self, node: int, *, timeout: float = 60.0) -> None:
        """Start a killed (or running: SIGTERM first) node again, same port and data."""
        process = self.nodes[node]
        if process.proc is not None:
            self.kill(node)
        process.start(timeout=timeout)

    def kill_coordinator(self) -> None:
        self.coordinator.kill(signal.SIGKILL)

    @property
    def database_url(self) -> str:
        return str(
            self.coordinator.settings.get("database_url")
            or f"sqlite:///{self.coordinator.data_dir / 'coordinator.db'}"
        )

    def ledger_entry(self, node: int, kind: str, blob_id: str) -> dict[str, Any] | None:
        """What node ``node`` keeps for a rebuild (``kind``: ``policies`` or ``tombstones``)."""
        path = self.nodes[node].data_dir / "ledger" / kind / blob_id
        try:
            found: dict[str, Any] = msgspec.json.decode(path.read_bytes())
        except FileNotFoundError:
            return None
        return found

    def restart_coordinator(self, *, timeout: float = 60.0) -> None:
        """Start it again on the same port and database (kill it first if it runs)."""
        if self.coordinator.proc is not None:
            self.coordinator.kill(signal.SIGKILL)
        self.coordinator.start(timeout=timeout)

    # -- tokens and clients --------------------------------------------------------------

    def token(self, *ops: Operation, ttl: int = 3600) -> str:
        chosen = set(ops) or {Operation.READ, Operation.DOWNLOAD, Operation.WRITE, Operation.DELETE}
        return tokens.mint(self.secret, ops=chosen, ttl=ttl, subject="cluster-tests")

    def headers(self, *ops: Operation) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(*(ops or (Operation.ADMIN,)))}"}

    def client(self, **options: Any) -> slidestore.Cluster:
        """The SDK on this cluster (read, write and delete token); quick retries."""
        options.setdefault("backoff", 0.05)
        return slidestore.connect(self.coordinator.url, self.token(), **options)

    # -- the coordinator's views ---------------------------------------------------------

    def nodes_view(self) -> dict[str, NodeView]:
        """``GET /v1/nodes`` by node id."""
        answer = self._http.get(
            f"{self.coordinator.url}{API}/nodes", headers=self.headers(Operation.ADMIN)
        )
        answer.raise_for_status()
        return {node.node_id: node for node in _nodes_decoder.decode(answer.content)}

    def states(self) -> dict[str, NodeState]:
        return {node_id: view.state for node_id, view in self.nodes_view().items()}

    def blob(self, blob_id: str) -> BlobView:
        answer = self._http.get(
            f"{self.coordinator.url}{API}/blobs/{blob_id}", headers=self.headers(Operation.READ)
        )
        answer.raise_for_status()
        return _blob_decoder.decode(answer.content)

    def metrics(self) -> dict[str, float]:
        """The coordinator's ``/metrics`` as ``{"name{labels}": value}``."""
        answer = self._http.get(f"{self.coordinator.url}/metrics", headers=self.headers())
        answer.raise_for_status()
        values: dict[str, float] = {}
        for line in answer.text.splitlines():
            if match := _METRIC.match(line):
                values[match[1] + (match[2] or "")] = float(match[3])
        return values

    def status(self) -> dict[str, Any]:
        """The coordinator's ``/v1/status``."""
        answer = self._http.get(f"{self.coordinator.url}/v1/status", headers=self.headers())
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def copies_made(self) -> float:
        """Repair copies this coordinator process finished (ok or failed)."""
        values = self.metrics()
        return sum(v for k, v in values.items() if k.startswith("slidestore_cluster_copies_total"))

    def wait_alive(self, nodes: list[int] | None = None, *, timeout: float = 30.0) -> None:
        """Until the coordinator lists each of ``nodes`` (default: every running one) alive."""
        chosen = nodes if nodes is not None else [i for i in range(len(self.nodes))]
        chosen = [i for i in chosen if self.running(i)]

        def all_alive() -> bool:
            try:
                ids = [self.node_id(i) for i in chosen]
                states = self.states()
            except (FileNotFoundError, httpx.HTTPError):
                return False
            return all(states.get(node_id) is NodeState.ALIVE for node_id in ids)

        eventually(all_alive, timeout=timeout, interval=0.1)

    def wait_state(self, node: int, state: NodeState, *, timeout: float) -> None:
        node_id = self.node_id(node)
        eventually(lambda: self.states().get(node_id) is state, timeout=timeout, interval=0.05)

    # -- replicas on disk ----------------------------------------------------------------

    def replica_path(self, node: int, blob_id: str) -> Path:
        """Where node ``node`` keeps ``blob_id`` (``BlobStore(data_dir / "blobs").path``),
        computed without opening the store (which would tidy its temp files)."""
        return self.nodes[node].data_dir / "blobs" / fanout(blob_id)

    def disk_hashes(self, blob_id: str) -> dict[int, str]:
        """sha256 of every file of ``blob_id`` on any node's disk, by node index."""
        found: dict[int, str] = {}
        for index in range(len(self.nodes)):
            path = self.replica_path(index, blob_id)
            with contextlib.suppress(FileNotFoundError):
                found[index] = sha256_file(path)
        return found

    def uploading(self) -> list[int]:
        """Nodes with an upload session on disk (``data_dir/uploads/<id>/``)."""
        return [
            index
            for index, node in enumerate(self.nodes)
            if any(p.is_dir() and p.name != "grants" for p in (node.data_dir / "uploads").glob("*"))
        ]

    def holders(self, blob_id: str) -> list[int]:
        """Indexes of the nodes the coordinator counts as replicas of ``blob_id``."""
        return [self.index_of(r.node_id) for r in self.blob(blob_id).replicas]

    def flip_byte(self, node: int, blob_id: str, offset: int | None = None) -> None:
        """Corrupt one byte of the node's copy in place (blob files are read-only)."""
        path = self.replica_path(node, blob_id)
        os.chmod(path, 0o644)
        with open(path, "r+b") as file:
            size = file.seek(0, os.SEEK_END)
            where = size // 2 if offset is None else offset
            file.seek(where)
            byte = file.read(1)
            file.seek(where)
            file.write(bytes([byte[0] ^ 0xFF]))
            file.flush()
            os.fsync(file.fileno())
        os.chmod(path, 0o444)

    def scrub(self, node: int) -> dict[str, Any]:
        """``POST /admin/scrub`` on the node: a scrub pass now; answers what it quarantined."""
        answer = self._http.post(
            f"{self.nodes[node].url}/admin/scrub", headers=self.headers(), timeout=120
        )
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def durable(self, blob_id: str, replicas: int | None = None, *, disk: bool = True) -> bool:
        """The coordinator counts ``replicas`` (default: the blob's target) alive copies on
        nodes that really run (not killed, not paused), and each of them is on disk hashing
        to the blob id (``disk=False``: the coordinator's word only, no hashing)."""
        try:
            view = self.blob(blob_id)
        except httpx.HTTPError:
            return False
        want = view.target if replicas is None else replicas
        alive = [
            r
            for r in view.replicas
            if r.state is NodeState.ALIVE and self._up(self.index_of(r.node_id))
        ]
        if len(alive) < want or view.status is not BlobStatus.OK:
            return False
        if not disk:
            return True
        hashes = self.disk_hashes(blob_id)
        return all(hashes.get(self.index_of(r.node_id)) == blob_id for r in alive)

    def wait_durable(
        self,
        blob_id: str,
        replicas: int | None = None,
        *,
        timeout: float = 30.0,
        disk: bool = True,
    ) -> BlobView:
        eventually(
            lambda: self.durable(blob_id, replicas, disk=disk), timeout=timeout, interval=0.1
        )
        return self.blob(blob_id)

    def logs(self) -> Iterator[tuple[str, str]]:
        """(name, text) of every process log, for a failing test's report."""
        for process in [self.coordinator, *self.nodes]:
            with contextlib.suppress(FileNotFoundError):
                yield process.log.name, process.log.read_text(errors="replace")

"""A node that refuses writes for lack of space (507) although its last report showed
room, and a node whose space is promised to an upload that never sends a byte: uploads
through the SDK, repair and rebalancing go to other nodes (issue 19, item 5). A real coordinator and
real node processes on loopback, on SQLite and on PostgreSQL.

The lying node is a small HTTP server that registers and heartbeats like a node with
a petabyte free, and answers 507 to every upload creation and replica order: what a node
whose free space was just promised away looks like until its next report. The promised
node is a real node with a small configured capacity (``capacity_bytes``, which caps the
node's free-space guard as well as its report) and a silent tus session on it.
"""

# ruff: noqa: F811  (fixtures imported from test_cluster_faults are test parameters here)

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import msgspec
import pytest
from test_cluster_faults import (  # noqa: F401  (fixtures)
    REBALANCE_CAPACITY,
    MakeCluster,
    R,
    assert_every_copy_good,
    base_slide,
    database_url,
    fill_three,
    make_cluster,
    rebalancing_cluster,
    slides,
)

from slidestore.cluster.wire import API, Heartbeat, NodeReport, Register
from slidestore.tokens import Operation
from slidestore_server.testing_cluster import Cluster, eventually

MOVES_OK = 'slidestore_cluster_rebalance_moves_total{result="ok"}'

PB = 1 << 50
MB = 1 << 20


class LyingNode:
    """Registers with a petabyte free and answers 507 to every write it is asked for."""

    def __init__(self, cluster: Cluster, node_id: str = "liar") -> None:
        self.cluster = cluster
        self.node_id = node_id
        self.requests: Counter[str] = Counter()
        lying = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                lying.requests[self.path.split("?")[0]] += 1
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                body = json.dumps(
                    {"error": "insufficient_storage", "detail": "promised to others"}
                ).encode()
                self.send_response(507)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Tus-Resumable", "1.0.0")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self.server.serve_forever, daemon=True),
            threading.Thread(target=self._beat, daemon=True),
        ]

    def _post(self, path: str, msg: msgspec.Struct) -> httpx.Response:
        return httpx.post(
            f"{self.cluster.coordinator.url}{path}",
            content=msgspec.json.encode(msg),
            headers={**self.cluster.headers(Operation.NODE), "Content-Type": "application/json"},
            timeout=10,
        )

    def _report(self) -> NodeReport:
        return NodeReport(capacity_bytes=PB, free_bytes=PB - MB, used_bytes=MB)

    def _beat(self) -> None:
        while not self._stop.wait(0.2):
            try:
                beat = Heartbeat(report=self._report())
                if self._post(f"{API}/nodes/{self.node_id}/heartbeat", beat).status_code == 404:
                    self._register()
            except httpx.HTTPError:
                pass

    def _register(self) -> None:
        msg = Register(node_id=self.node_id, url=self.url, zone="liar", report=self._report())
        answer = self._post(f"{API}/nodes/register", msg)
        assert answer.status_code in (200, 201), answer.text

    def __enter__(self) -> LyingNode:
        self._register()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cluster(make_cluster: MakeCluster) -> Cluster:
    # Node 3 is small: 320 MiB of capacity with a 64 MiB reserve, promised away below.
    return make_cluster(per_node={3: {"capacity_bytes": 320 * MB}})


def test_uploads_and_repair_pass_over_full_nodes(
    cluster: Cluster, slides: Callable[[int], Path]
) -> None:
    small = 3
    small_id = cluster.node_id(small)
    view = cluster.nodes_view()[small_id]
    # A session that promises all but 100 kB of the node's room (a slide is ~0.8 MB)
    # and never sends a byte.
    promise = view.free_bytes - view.reserve_bytes - 100_000
    silent = httpx.post(
        f"{cluster.nodes[small].url}/uploads",
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(promise),
            "Authorization": f"Bearer {cluster.token(Operation.WRITE)}",
        },
        timeout=30,
    )
    assert silent.status_code == 201, silent.text
    # Heartbeats report the node's free space net of the promise.
    eventually(
        lambda: cluster.nodes_view()[small_id].free_bytes <= view.free_bytes - promise,
        timeout=20,
    )

    with LyingNode(cluster) as liar:
        eventually(lambda: "liar" in cluster.nodes_view(), timeout=20)
        with cluster.client() as sdk:
            # The liar ranks first for nearly every blob (a petabyte free): every upload
            # meets its 507 at creation and is placed again elsewhere.
            blob_ids = [sdk.upload(slides(n), wait="primary", progress=False) for n in range(4)]
        assert liar.requests["/uploads"] >= 1, liar.requests
        # Repair wants a third copy of each blob and tries the liar first: after its 507 it
        # copies to the one remaining node with room instead, within a bound.
        for blob_id in blob_ids:
            assert cluster.wait_durable(blob_id, R, timeout=60)
        # A 507 is remembered: not one order per repair pass (5 per second) for a minute.
        assert liar.requests["/replicas"] <= 2 * len(blob_ids), liar.requests
    for blob_id in blob_ids:
        assert small not in cluster.holders(blob_id)
        assert small not in cluster.disk_hashes(blob_id)
        assert "liar" not in {r.node_id for r in cluster.blob(blob_id).replicas}
        assert_every_copy_good(cluster, blob_id)


def test_rebalancing_passes_over_a_node_that_answered_507(
    tmp_path: Path, database_url: str, slides: Callable[[int], Path]
) -> None:
    """The liar looks like the emptiest node there is (a petabyte free): rebalancing asks
    it once per round at most, remembers its 507, and then levels the real nodes — a
    newcomer gets its share — without asking it again. Before the rebalancer consulted
    the refusals it ordered a copy to the liar every round and, with the liar's petabyte
    in the mean fill, never moved anything to the newcomer."""
    capacity = REBALANCE_CAPACITY
    cluster = rebalancing_cluster(tmp_path / "rebalance", database_url, 4e6)
    try:
        blob_ids = fill_three(cluster, slides)
        size = slides(0).stat().st_size
        with LyingNode(cluster) as liar:
            eventually(lambda: "liar" in cluster.nodes_view(), timeout=20)
            cluster.restart(3)
            cluster.wait_alive([3])
            newcomer = cluster.node_id(3)

            def level() -> bool:
                fills = [
                    1 - view.free_bytes / view.capacity_bytes
                    for node_id, view in cluster.nodes_view().items()
                    if node_id != "liar"
                ]
                return max(fills) - min(fills) <= 0.05 + size / capacity

            eventually(level, timeout=60, interval=0.2)
            # Then a while longer: rounds keep running (every two heartbeats), none asks
            # the liar again while its refusal is remembered.
            time.sleep(5)
            asked = liar.requests["/replicas"]
        assert 1 <= asked <= 2, liar.requests  # the first round's orders, no more
        assert cluster.metrics().get(MOVES_OK, 0) >= 4
        on_newcomer = [
            b for b in blob_ids if newcomer in {r.node_id for r in cluster.blob(b).replicas}
        ]
        assert len(on_newcomer) >= 4
        for blob_id in blob_ids:
            assert "liar" not in {r.node_id for r in cluster.blob(blob_id).replicas}
            eventually(lambda b=blob_id: len(cluster.disk_hashes(b)) == 2, timeout=20)
            assert_every_copy_good(cluster, blob_id, at_least=2)
    finally:
        cluster.close()

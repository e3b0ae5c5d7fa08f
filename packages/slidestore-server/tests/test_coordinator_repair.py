"""The leader's loop against real storage nodes: repair copies (``POST /replicas``), trims,
deletes, retention to an fsspec archive and restore from it.

The nodes run without ``SLIDESTORE_COORDINATOR_URL``: the test registers and heartbeats
for them (``FakeNode`` with the real URLs), so only the coordinator's calls to the nodes
are under test here. Needs the node side's ``POST /replicas``.
"""
# ruff: noqa: F811  (fixtures imported from coordinator_kit are test parameters here)

from __future__ import annotations

import hashlib
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from coordinator_kit import (  # noqa: F401  (fixtures)
    SECRET,
    FakeNode,
    Heartbeats,
    database_url,
    eventually,
    headers,
    start_coordinator,
)

from slidestore.blobs import BlobStore
from slidestore.tokens import Operation
from slidestore_server.testing import CoordinatorProcess, NodeProcess

Start = Callable[..., CoordinatorProcess]
DATA = os.urandom(3 << 20)
BLOB = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def start_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., NodeProcess]]:
    """``start_storage(holds_blob, **settings)``: a real node, its store pre-filled with
    DATA or not."""
    started: list[NodeProcess] = []

    def start(holds_blob: bool, **settings: str) -> NodeProcess:
        data_dir = tmp_path_factory.mktemp("storage") / "data"
        if holds_blob:
            assert BlobStore(data_dir / "blobs", reserve_bytes=0).put(DATA) == BLOB
        node = NodeProcess(
            data_dir,
            settings={"secret": SECRET, "prerender": "false", "reserve_bytes": 0, **settings},
        )
        started.append(node)
        return node.start()

    yield start
    for node in started:
        node.kill(signal.SIGKILL)


def fake(coordinator: CoordinatorProcess, node: NodeProcess, name: str, zone: str) -> FakeNode:
    stand_in = FakeNode(coordinator.url, name, url=node.url, zone=zone)
    if (node.data_dir / "blobs").exists() and BlobStore(
        node.data_dir / "blobs", reserve_bytes=0
    ).exists(BLOB):
        stand_in.inventory[BLOB] = len(DATA)
    assert stand_in.register().status_code == 200
    return stand_in


def blob_on(node: NodeProcess) -> int:
    answer = httpx.get(f"{node.url}/blobs/{BLOB}", headers=headers(Operation.DOWNLOAD), timeout=30)
    if answer.status_code == 200:
        assert answer.content == DATA
    return answer.status_code


def view(coordinator: CoordinatorProcess) -> dict:  # type: ignore[type-arg]
    return httpx.get(f"{coordinator.url}/v1/blobs/{BLOB}", headers=headers()).json()


def test_repair_copies_trims_and_deletes_on_real_nodes(
    start_coordinator: Start, start_storage: Callable[..., NodeProcess]
) -> None:
    coordinator = start_coordinator(replicas=3)
    storage = [start_storage(holds_blob=i == 0) for i in range(3)]
    stand_ins = [fake(coordinator, node, f"n{i}", f"z{i}") for i, node in enumerate(storage)]
    with Heartbeats(*stand_ins):
        waited = httpx.get(
            f"{coordinator.url}/v1/blobs/{BLOB}/wait",
            params={"replicas": 3, "timeout": 60},
            headers=headers(),
            timeout=90,
        )
        assert waited.status_code == 200, waited.text
        assert waited.json()["status"] == "ok"
        assert [blob_on(node) for node in storage] == [200, 200, 200]
        # Each copy succeeded the first time (a node answers 201 for a fresh copy).
        metrics = httpx.get(f"{coordinator.url}/metrics", headers=headers()).text
        assert re.search(r'slidestore_cluster_copies_total\{result="ok"\} 2\.0', metrics), metrics
        assert 'result="failed"' not in metrics

        # A fourth copy appears (a node returning with it): trimmed back to R = 3.
        extra = start_storage(holds_blob=True)
        stand_ins.append(fake(coordinator, extra, "n3", "z3"))
        eventually(lambda: [blob_on(n) for n in [*storage, extra]].count(404) == 1, timeout=30)
        assert len(view(coordinator)["replicas"]) == 3

        # Adopted (no client placed it): an operator's delete.
        deleted = httpx.delete(
            f"{coordinator.url}/v1/blobs/{BLOB}", headers=headers(Operation.ADMIN)
        )
        assert deleted.status_code == 204
        # Answered once recorded; the copies go right after.
        eventually(lambda: [blob_on(n) for n in [*storage, extra]] == [404] * 4, timeout=20)
        time.sleep(1.0)  # several leader passes: repair must not bring a deleted blob back
        assert [blob_on(n) for n in [*storage, extra]] == [404] * 4
        assert view(coordinator)["status"] == "deleted"


def test_expired_blobs_are_archived_deleted_and_restorable(
    start_coordinator: Start, start_storage: Callable[..., NodeProcess], tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    coordinator = start_coordinator(replicas=1, archive_url=f"file://{archive}")
    node = start_storage(holds_blob=True, archive_url=f"file://{archive}")
    with Heartbeats(fake(coordinator, node, "n0", "z0")):
        expired = httpx.put(
            f"{coordinator.url}/v1/blobs/{BLOB}/retention",
            json={"pinned": False, "expires_at": time.time() - 1},
            headers=headers(),
        )
        assert expired.status_code == 200
        eventually(lambda: view(coordinator)["status"] == "archived", timeout=30)
        assert (archive / BLOB).read_bytes() == DATA
        assert view(coordinator)["archive_url"] == f"file://{archive}/{BLOB}"
        eventually(lambda: blob_on(node) == 404, timeout=10)

        restored = httpx.post(f"{coordinator.url}/v1/blobs/{BLOB}/restore", headers=headers())
        assert restored.status_code == 200, restored.text
        waited = httpx.get(
            f"{coordinator.url}/v1/blobs/{BLOB}/wait",
            params={"replicas": 1, "timeout": 60},
            headers=headers(),
            timeout=90,
        )
        assert waited.status_code == 200 and waited.json()["status"] == "ok"
        assert blob_on(node) == 200


def test_expiry_without_archive_deletes(
    start_coordinator: Start, start_storage: Callable[..., NodeProcess]
) -> None:
    coordinator = start_coordinator(replicas=1)
    node = start_storage(holds_blob=True)
    with Heartbeats(fake(coordinator, node, "n0", "z0")):
        httpx.put(
            f"{coordinator.url}/v1/blobs/{BLOB}/retention",
            json={"expires_at": time.time() - 1},
            headers=headers(),
        )
        eventually(lambda: view(coordinator)["status"] == "deleted", timeout=30)
        eventually(lambda: blob_on(node) == 404, timeout=10)
        restore = httpx.post(f"{coordinator.url}/v1/blobs/{BLOB}/restore", headers=headers())
        assert restore.status_code == 409


def _status(coordinator: CoordinatorProcess) -> dict:  # type: ignore[type-arg]
    return httpx.get(f"{coordinator.url}/v1/status", headers=headers()).json()


def _copies_ok(coordinator: CoordinatorProcess) -> float:
    metrics = httpx.get(f"{coordinator.url}/metrics", headers=headers()).text
    found = re.search(r'slidestore_cluster_copies_total\{result="ok"\} ([0-9.]+)', metrics)
    return float(found.group(1)) if found else 0.0


def test_a_new_leader_waits_for_holders_still_registering(
    start_coordinator: Start, start_storage: Callable[..., NodeProcess]
) -> None:
    """A cold start: the blob's holders register one after another, the last one after the
    first grace would have ended (but within the grace restarted by the second holder). No
    copy is made, so no surplus; an empty node registered from the start gets nothing."""
    holders = [start_storage(holds_blob=True) for _ in range(3)]
    empty = start_storage(holds_blob=False)
    coordinator = start_coordinator(replicas=3, repair_grace=4.0)
    status = eventually(lambda: (s := _status(coordinator))["leader"] and s)
    assert 0 < status["repair_held_seconds"] <= 4.0
    started = time.monotonic()
    stand_ins = [fake(coordinator, holders[0], "h0", "z0"), fake(coordinator, empty, "e", "z9")]
    with Heartbeats(*stand_ins) as beats:
        time.sleep(max(0.0, started + 2.0 - time.monotonic()))
        beats.add(fake(coordinator, holders[1], "h1", "z1"))  # restarts the wait: ~6 s
        time.sleep(max(0.0, started + 5.0 - time.monotonic()))  # the first grace is over
        beats.add(fake(coordinator, holders[2], "h2", "z2"))
        assert view(coordinator)["status"] == "ok"
        eventually(lambda: _status(coordinator)["repair_held_seconds"] == 0, timeout=10)
        time.sleep(1.0)  # ten leader passes with nothing held
        assert _copies_ok(coordinator) == 0
        assert blob_on(empty) == 404
        assert sorted(r["node_id"] for r in view(coordinator)["replicas"]) == ["h0", "h1", "h2"]


def test_without_the_grace_a_cold_start_copies_too_early(
    start_coordinator: Start, start_storage: Callable[..., NodeProcess]
) -> None:
    """The control of the test above: with ``repair_grace=0`` the first holder's blob is
    copied to the empty node at once, before any other holder could have registered."""
    holders = [start_storage(holds_blob=True)]
    empty = start_storage(holds_blob=False)
    coordinator = start_coordinator(replicas=2, repair_grace=0)
    eventually(lambda: _status(coordinator)["leader"])
    assert _status(coordinator)["repair_held_seconds"] == 0
    stand_ins = [fake(coordinator, holders[0], "h0", "z0"), fake(coordinator, empty, "e", "z9")]
    with Heartbeats(*stand_ins):
        eventually(lambda: blob_on(empty) == 200, timeout=30)
        assert _copies_ok(coordinator) == 1

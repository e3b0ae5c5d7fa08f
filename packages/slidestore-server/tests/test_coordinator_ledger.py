"""What the coordinator sends nodes to keep (policies, tombstones) and how it rebuilds an
empty database from what they report (``docs/cluster.md``, "Rebuilding the database").

Nodes are simulated (``FakeNode``) over real HTTP, on SQLite and PostgreSQL; the real
cluster runs are in ``tests/test_cluster_rebuild.py``.
"""
# ruff: noqa: F811  (fixtures imported from coordinator_kit are test parameters here)

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import msgspec
from coordinator_kit import (  # noqa: F401  (fixtures)
    FakeNode,
    database_url,
    eventually,
    headers,
    start_coordinator,
)

from slidestore.cluster.wire import (
    BlobPolicy,
    BlobRef,
    Heartbeat,
    HeartbeatAck,
    LedgerUpdate,
    Register,
    RegisterAck,
    Tombstone,
)
from slidestore.tokens import Operation
from slidestore_server.testing import CoordinatorProcess

Start = Callable[..., CoordinatorProcess]
A, B, C, D = "a" * 64, "b" * 64, "c" * 64, "d" * 64
WEEK = 7 * 86400.0
T = time.time() - 1000  # times in the recent past: expiries a week on are to come


def register(
    node: FakeNode,
    inventory: dict[str, int],
    policies: tuple[BlobPolicy, ...] = (),
    tombstones: tuple[Tombstone, ...] = (),
) -> LedgerUpdate:
    node.inventory = dict(inventory)
    msg = Register(
        node_id=node.node_id,
        url=node.url,
        zone=node.zone,
        report=node.report(),
        inventory=tuple(BlobRef(blob_id=b, size=s) for b, s in inventory.items()),
        policies=policies,
        tombstones=tombstones,
    )
    answer = node._post("/v1/nodes/register", msg)
    assert answer.status_code == 200, answer.text
    ledger = msgspec.json.decode(answer.content, type=RegisterAck).ledger
    assert ledger is not None
    return ledger


def heartbeat(node: FakeNode, seq: int) -> LedgerUpdate | None:
    msg = Heartbeat(report=node.report(), ledger_seq=seq)
    answer = node._post(f"/v1/nodes/{node.node_id}/heartbeat", msg)
    assert answer.status_code == 200, answer.text
    return msgspec.json.decode(answer.content, type=HeartbeatAck).ledger


def blob(coordinator: CoordinatorProcess, blob_id: str) -> dict:  # type: ignore[type-arg]
    answer = httpx.get(f"{coordinator.url}/v1/blobs/{blob_id}", headers=headers(), timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def policy(blob_id: str, changed_at: float, target: int = 2) -> BlobPolicy:
    return BlobPolicy(
        blob_id=blob_id,
        target=target,
        pinned=False,
        expires_at=changed_at + WEEK,
        created_at=changed_at - 10,
        changed_at=changed_at,
        owners=("portal",),
    )


def test_an_empty_database_is_rebuilt_from_policies_and_tombstones(
    start_coordinator: Start,
) -> None:
    coordinator = start_coordinator(replicas=3)
    away = FakeNode(coordinator.url, "away")  # was down when A was deleted
    other = FakeNode(coordinator.url, "other")
    # The holder that was away registers first: A is adopted from its stored policy...
    register(away, {A: 10, C: 30, D: 40}, policies=(policy(A, T + 100), policy(C, T + 300)))
    assert (blob(coordinator, A)["status"], blob(coordinator, A)["target"]) == (
        "under_replicated",
        2,
    )
    # ...until a node that kept the tombstones registers. A was deleted after its policy
    # was set: deleted. C's tombstone predates C's policy (stored again since): stale.
    # B is known only by its tombstone: a copy that shows up later is not adopted.
    register(
        other,
        {},
        tombstones=(
            Tombstone(blob_id=A, deleted_at=T + 200, size=10),
            Tombstone(blob_id=B, deleted_at=T + 150, size=20),
            Tombstone(blob_id=C, deleted_at=T + 250, size=30),
        ),
    )
    assert blob(coordinator, A)["status"] == "deleted"
    assert blob(coordinator, B)["status"] == "deleted"
    found = blob(coordinator, C)
    assert (found["target"], found["pinned"], found["expires_at"]) == (2, False, T + 300 + WEEK)
    # D came with no policy (stored before nodes kept them): adopted pinned at the default R.
    found = blob(coordinator, D)
    assert (found["target"], found["pinned"]) == (3, True)
    late = FakeNode(coordinator.url, "late")
    register(late, {B: 20})
    assert blob(coordinator, B)["status"] == "deleted"

    # The owner came back with the policy: its delete works; a stranger's changes nothing.
    def delete_as(subject: str) -> None:
        from coordinator_kit import SECRET

        from slidestore import tokens

        token = tokens.mint(SECRET, ops={Operation.DELETE}, subject=subject)
        answer = httpx.delete(
            f"{coordinator.url}/v1/blobs/{C}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert answer.status_code == 204

    delete_as("stranger")
    assert blob(coordinator, C)["status"] != "deleted"
    delete_as("portal")
    assert blob(coordinator, C)["status"] == "deleted"


def test_nodes_are_sent_their_policies_and_every_tombstone(start_coordinator: Start) -> None:
    coordinator = start_coordinator(replicas=2)
    holder = FakeNode(coordinator.url, "holder")
    bystander = FakeNode(coordinator.url, "bystander")
    update = register(holder, {A: 10})
    (sent,) = update.policies
    assert (sent.blob_id, sent.target, sent.pinned, sent.expires_at) == (A, 2, True, None)
    seen = update.seq
    quiet = register(bystander, {})
    assert quiet.policies == () and quiet.tombstones == ()
    # Nothing changed: nothing to send.
    assert heartbeat(holder, seen) is None or heartbeat(holder, seen).policies == ()  # type: ignore[union-attr]

    expires = 1e10
    answer = httpx.put(
        f"{coordinator.url}/v1/blobs/{A}/retention",
        json={"expires_at": expires},
        headers=headers(Operation.ADMIN),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    update = heartbeat(holder, seen)
    assert update is not None
    (sent,) = update.policies
    assert (sent.pinned, sent.expires_at) == (False, expires)
    assert sent.changed_at > sent.created_at
    # The bystander holds no copy: it gets no policy.
    other = heartbeat(bystander, quiet.seq)
    assert other is None or other.policies == ()

    answer = httpx.delete(f"{coordinator.url}/v1/blobs/{A}", headers=headers(Operation.ADMIN))
    assert answer.status_code == 204
    for node, since in ((holder, update.seq), (bystander, quiet.seq)):
        got = heartbeat(node, since)
        assert got is not None
        assert [t.blob_id for t in got.tombstones] == [A]
        assert got.tombstones[0].deleted_at > 0
    # A registration starts over: the tombstone comes again (a node with a fresh ledger).
    assert [t.blob_id for t in register(bystander, {}).tombstones] == [A]
    # A cursor from another database (larger than anything here) starts over too.
    again = heartbeat(bystander, 10**9)
    assert again is not None and [t.blob_id for t in again.tombstones] == [A]

    # What a node reports for a rebuild becomes rows: malformed entries are refused (400).
    for bad in (
        {"tombstones": [{"blob_id": "x" * 65, "deleted_at": 1.0}]},
        {"policies": [{"blob_id": B, "target": 0, "pinned": True}]},
    ):
        body = msgspec.to_builtins(
            Register(node_id="odd", url="http://127.0.0.1:9", report=bystander.report())
        )
        answer = httpx.post(
            f"{coordinator.url}/v1/nodes/register",
            json={**body, **bad},
            headers=headers(Operation.NODE),
            timeout=10,
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_node_report"


def test_tombstones_are_forgotten_after_the_tombstone_period(start_coordinator: Start) -> None:
    coordinator = start_coordinator(tombstone_days=2.0 / 86400)  # two seconds
    holder = FakeNode(coordinator.url, "holder")
    register(holder, {A: 10, B: 20})
    for blob_id in (A, B):
        answer = httpx.delete(
            f"{coordinator.url}/v1/blobs/{blob_id}", headers=headers(Operation.ADMIN)
        )
        assert answer.status_code == 204
    # A's copy is gone from the holder; B's is still on record (its holder never confirmed).
    assert holder.heartbeat(removed=(A,)).status_code == 200
    time.sleep(3.0)

    def known(blob_id: str) -> int:
        return httpx.get(
            f"{coordinator.url}/v1/blobs/{blob_id}", headers=headers(), timeout=10
        ).status_code

    eventually(lambda: known(A) == 404, timeout=10)
    assert known(B) == 200  # kept while a copy may still be out there

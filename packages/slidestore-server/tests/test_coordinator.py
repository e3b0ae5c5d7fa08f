"""The coordinator against SQLite and PostgreSQL: registry, liveness, placement, blobs.

Nodes are simulated (``FakeNode``) over real HTTP; each test gets a fresh database.
"""
# ruff: noqa: F811  (fixtures imported from coordinator_kit are test parameters here)

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import asyncpg
import httpx
import msgspec
import pytest
from coordinator_kit import (  # noqa: F401  (fixtures)
    FAST_LIVENESS,
    GB,
    PG_ADMIN,
    SECRET,
    FakeNode,
    database_url,
    eventually,
    headers,
    start_coordinator,
)

from slidestore import tokens
from slidestore.cluster.wire import Register
from slidestore.tokens import Operation
from slidestore_server.testing import CoordinatorProcess

Start = Callable[..., CoordinatorProcess]
BLOB_A = "a" * 64
BLOB_B = "b" * 64


def states(coordinator: CoordinatorProcess) -> dict[str, str]:
    answer = httpx.get(f"{coordinator.url}/v1/nodes", headers=headers(Operation.ADMIN))
    assert answer.status_code == 200
    return {node["node_id"]: node["state"] for node in answer.json()}


def place(coordinator: CoordinatorProcess, **body: object) -> httpx.Response:
    return httpx.post(
        f"{coordinator.url}/v1/placements", json=body, headers=headers(Operation.WRITE)
    )


def test_register_heartbeat_and_liveness_transitions(start_coordinator: Start) -> None:
    coordinator = start_coordinator(**FAST_LIVENESS)
    node = FakeNode(coordinator.url, "n1")
    ack = node.register()
    assert ack.status_code == 200
    timing = {k: ack.json()[k] for k in ("heartbeat_interval", "suspect_after", "dead_after")}
    assert timing == {"heartbeat_interval": 1.0, "suspect_after": 0.5, "dead_after": 1.5}
    assert ack.json()["tombstone_seconds"] == 30 * 86400.0
    assert states(coordinator) == {"n1": "alive"}
    assert node.heartbeat().json()["state"] == "alive"

    eventually(lambda: states(coordinator)["n1"] == "suspect", timeout=3)
    eventually(lambda: states(coordinator)["n1"] == "dead", timeout=3)
    status = httpx.get(f"{coordinator.url}/v1/status", headers=headers(Operation.ADMIN)).json()
    assert status["nodes"] == {"alive": 0, "suspect": 0, "dead": 1}
    # A heartbeat revives it at once.
    assert node.heartbeat().status_code == 200
    assert states(coordinator) == {"n1": "alive"}


def test_heartbeat_from_an_unknown_node_is_404_node_unknown(start_coordinator: Start) -> None:
    coordinator = start_coordinator()
    answer = FakeNode(coordinator.url, "ghost").heartbeat()
    assert answer.status_code == 404
    assert answer.json()["error"] == "node_unknown"


def test_node_messages_need_admin_tokens_and_sane_figures(start_coordinator: Start) -> None:
    coordinator = start_coordinator()
    refused = httpx.post(
        f"{coordinator.url}/v1/nodes/register", json={}, headers=headers(Operation.WRITE)
    )
    assert refused.status_code == 403
    bad = FakeNode(coordinator.url, "n1", capacity=10, free=20).register()
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_node_report"


def test_placement_spreads_zones_skips_full_and_excluded_nodes(start_coordinator: Start) -> None:
    # The fake nodes register once and never heartbeat: none may turn suspect mid-test.
    coordinator = start_coordinator(replicas=3, suspect_after=60, dead_after=120)
    nodes = [
        FakeNode(coordinator.url, "a1", zone="a"),
        FakeNode(coordinator.url, "a2", zone="a"),
        FakeNode(coordinator.url, "b1", zone="b"),
        FakeNode(coordinator.url, "c1", zone="c"),
        FakeNode(coordinator.url, "full", zone="d", free=1 * GB),
    ]
    for node in nodes:
        assert node.register().status_code == 200
    zone = {node.node_id: node.zone for node in nodes}
    for size in range(1, 30):
        answer = place(coordinator, size=5 * GB + size)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        chosen = [t["node_id"] for t in body["targets"]]
        assert len(chosen) == 3
        assert "full" not in chosen
        assert len({zone[n] for n in chosen}) == 3  # zones a, b, c: one copy each
        assert body["primary"] == body["targets"][0]
        assert body["upload_url"] == f"{body['primary']['url']}/uploads"
        assert not body["exists"]

    excluded = place(coordinator, size=GB, exclude=["b1", "c1"]).json()
    chosen = {t["node_id"] for t in excluded["targets"]}
    assert chosen.isdisjoint({"b1", "c1"})
    assert len(chosen) == 3  # a1, a2 and the small node: the blob fits there

    none_fits = place(coordinator, size=60 * GB)
    assert none_fits.status_code == 507
    assert none_fits.json()["error"] == "no_placement"


def test_a_placement_hands_out_one_upload_and_nothing_more(start_coordinator: Start) -> None:
    """The grant uploads this size (and content) once; it reads nothing, places nothing."""
    coordinator = start_coordinator()
    FakeNode(coordinator.url, "n1").register()
    body = place(coordinator, size=10, sha256=BLOB_A).json()
    cap = tokens.verify(SECRET, body["token"])
    assert cap.is_upload_grant and cap.size == 10 and cap.blob == BLOB_A
    assert cap.allows(Operation.UPLOAD, BLOB_A)
    assert cap.exp - time.time() > 3000
    for wider in (Operation.READ, Operation.DOWNLOAD, Operation.WRITE, Operation.DELETE):
        assert not cap.allows(wider, BLOB_A), wider
    assert not cap.allows(Operation.UPLOAD, BLOB_B)
    grant = {"Authorization": f"Bearer {body['token']}"}
    again = httpx.post(f"{coordinator.url}/v1/placements", json={"size": 10}, headers=grant)
    assert again.status_code == 403 and again.json()["error"] == "forbidden"
    unnamed = tokens.verify(SECRET, place(coordinator, size=10).json()["token"])
    assert unnamed.blob == tokens.ALL_BLOBS and unnamed.size == 10


def test_existing_content_answers_no_token(start_coordinator: Start) -> None:
    """Knowing a sha256 is not owning it: the "exists" answer grants nothing."""
    coordinator = start_coordinator()
    node = FakeNode(coordinator.url, "n1")
    node.register()
    node.heartbeat(added={BLOB_A: 10})
    answer = place(coordinator, size=10, sha256=BLOB_A).json()
    assert answer["exists"] is True and answer["token"] is None


def test_node_endpoints_need_a_node_token_and_status_an_admin(start_coordinator: Start) -> None:
    coordinator = start_coordinator()
    node = FakeNode(coordinator.url, "n1")
    body = msgspec.json.encode(
        Register(node_id="n9", url="http://127.0.0.1:1", zone="z", report=node.report())
    )
    url = f"{coordinator.url}/v1/nodes/register"
    for wider in (Operation.ADMIN, Operation.WRITE):
        refused = httpx.post(url, content=body, headers=headers(wider))
        assert refused.status_code == 403, wider
    assert httpx.post(url, content=body, headers=headers(Operation.NODE)).status_code == 200
    for path in ("/v1/nodes", "/v1/status"):
        for narrower in (Operation.READ, Operation.WRITE, Operation.NODE):
            answer = httpx.get(coordinator.url + path, headers=headers(narrower))
            assert answer.status_code == 403, (path, narrower)
        assert (
            httpx.get(coordinator.url + path, headers=headers(Operation.ADMIN)).status_code == 200
        )


def test_known_content_exists_and_commits_record_the_placement(start_coordinator: Start) -> None:
    coordinator = start_coordinator(replicas=3)
    n1, n2 = FakeNode(coordinator.url, "n1"), FakeNode(coordinator.url, "n2")
    n1.register()
    n2.register()
    expires = time.time() + 3600
    first = place(coordinator, size=100, sha256=BLOB_A, replicas=2, expires_at=expires).json()
    assert first["exists"] is False
    blob = httpx.get(f"{coordinator.url}/v1/blobs/{BLOB_A}", headers=headers(Operation.ADMIN))
    assert blob.status_code == 404  # placed, not committed: no blob yet

    primary = n1 if first["primary"]["node_id"] == "n1" else n2
    primary.heartbeat(added={BLOB_A: 100})
    view = httpx.get(f"{coordinator.url}/v1/blobs/{BLOB_A}", headers=headers(Operation.ADMIN))
    assert view.json()["target"] == 2
    assert view.json()["pinned"] is False
    assert view.json()["expires_at"] == pytest.approx(expires)
    assert [r["node_id"] for r in view.json()["replicas"]] == [primary.node_id]

    again = place(coordinator, size=100, sha256=BLOB_A).json()
    assert again["exists"] is True and again["primary"] is None and again["upload_url"] is None

    # Reported without any placement: adopted with the default R, pinned.
    n2.heartbeat(added={BLOB_B: 7})
    adopted = httpx.get(f"{coordinator.url}/v1/blobs/{BLOB_B}", headers=headers(Operation.ADMIN))
    assert adopted.json()["target"] == 3 and adopted.json()["pinned"] is True


def test_placement_without_sha256_is_matched_by_primary_and_size(start_coordinator: Start) -> None:
    coordinator = start_coordinator()
    node = FakeNode(coordinator.url, "n1")
    node.register()
    assert place(coordinator, size=4242, replicas=1, expires_at=time.time() + 60).status_code == 200
    node.heartbeat(added={BLOB_A: 4242})
    view = httpx.get(f"{coordinator.url}/v1/blobs/{BLOB_A}", headers=headers(Operation.ADMIN))
    assert view.json()["target"] == 1 and view.json()["pinned"] is False


def test_wait_long_polls_until_enough_copies(start_coordinator: Start) -> None:
    coordinator = start_coordinator()
    n1, n2 = FakeNode(coordinator.url, "n1"), FakeNode(coordinator.url, "n2")
    n1.register()
    n2.register()
    n1.heartbeat(added={BLOB_A: 5})
    url = f"{coordinator.url}/v1/blobs/{BLOB_A}/wait"
    timed_out = httpx.get(url, params={"replicas": 2, "timeout": 0.3}, headers=headers())
    assert timed_out.status_code == 408

    later = threading.Timer(0.5, lambda: n2.heartbeat(added={BLOB_A: 5}))
    later.start()
    started = time.monotonic()
    done = httpx.get(url, params={"replicas": 2, "timeout": 10}, headers=headers(), timeout=20)
    later.join()
    assert done.status_code == 200
    assert 0.4 < time.monotonic() - started < 5
    assert {r["node_id"] for r in done.json()["replicas"]} == {"n1", "n2"}


def test_delete_marks_the_blob_deleted_and_keeps_it_out_of_placements(
    start_coordinator: Start,
) -> None:
    coordinator = start_coordinator()
    node = FakeNode(coordinator.url, "n1")
    node.register()
    node.heartbeat(added={BLOB_A: 5})
    url = f"{coordinator.url}/v1/blobs/{BLOB_A}"
    assert httpx.delete(url, headers=headers(Operation.READ)).status_code == 403
    # Adopted: no client placed it, so a client's delete holds no claim and changes nothing.
    assert httpx.delete(url, headers=headers(Operation.DELETE)).status_code == 204
    assert httpx.get(url, headers=headers()).json()["status"] != "deleted"
    assert httpx.delete(url, headers=headers(Operation.ADMIN)).status_code == 204
    assert httpx.get(url, headers=headers()).json()["status"] == "deleted"
    assert place(coordinator, size=5, sha256=BLOB_A).json()["exists"] is False
    assert (
        httpx.delete(f"{coordinator.url}/v1/blobs/{BLOB_B}", headers=headers()).status_code == 404
    )


def test_drain_and_health_endpoints(start_coordinator: Start) -> None:
    coordinator = start_coordinator()
    FakeNode(coordinator.url, "n1").register()
    drained = httpx.post(f"{coordinator.url}/v1/nodes/n1/drain", headers=headers())
    assert drained.status_code == 200 and drained.json()["draining"] is True
    assert place(coordinator, size=1).status_code == 507  # the only node is leaving
    assert httpx.post(f"{coordinator.url}/v1/nodes/nx/drain", headers=headers()).status_code == 404
    assert httpx.get(f"{coordinator.url}/healthz").status_code == 200
    assert httpx.get(f"{coordinator.url}/readyz").json()["status"] == "ready"
    spec = httpx.get(f"{coordinator.url}/openapi.json").json()
    assert "/v1/placements" in spec["paths"] and "Placement" in spec["components"]["schemas"]
    metrics = httpx.get(f"{coordinator.url}/metrics", headers=headers()).text
    assert "slidestore_cluster_placement_seconds_count 1.0" not in metrics  # 507 not timed
    assert 'slidestore_cluster_nodes{state="alive"}' in metrics


def test_exactly_one_leader_and_failover(start_coordinator: Start) -> None:
    first, second = start_coordinator(), start_coordinator()

    def leaders() -> list[CoordinatorProcess]:
        out = []
        for process in (first, second):
            status = httpx.get(f"{process.url}/v1/status", headers=headers(), timeout=5)
            if status.json()["leader"]:
                out.append(process)
        return out

    eventually(lambda: len(leaders()) == 1, timeout=10)
    for _ in range(10):  # and it stays that way
        assert len(leaders()) == 1
        time.sleep(0.1)
    leader = leaders()[0]
    other = second if leader is first else first
    leader.kill()
    started = time.monotonic()
    eventually(lambda: httpx.get(f"{other.url}/v1/status", headers=headers()).json()["leader"])
    assert time.monotonic() - started < 5


def test_lost_database_connections_answer_503_then_recover(
    start_coordinator: Start, database_url: str
) -> None:
    """PostgreSQL restarting (its backends terminated) costs at most a retryable 503 per
    pooled connection, never a 500; SQLite, which cannot lose a connection, just works."""
    # The fake node heartbeats only at the end: it must not turn suspect (507) meanwhile.
    coordinator = start_coordinator(suspect_after=60, dead_after=120)
    node = FakeNode(coordinator.url, "n1")
    node.register()
    for _ in range(4):  # warm the pool: several connections are open when the cut comes
        assert place(coordinator, size=1).status_code == 200
    if database_url.startswith("postgresql"):
        name = database_url.rsplit("/", 1)[1]
        terminated = asyncio.run(
            _pg_value(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
        )
        assert terminated >= 1
    answers = [place(coordinator, size=1) for _ in range(12)]
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {200, 503}, statuses
    for answer in answers:
        if answer.status_code == 503:
            assert answer.json()["error"] == "database_unavailable"
            assert answer.headers["Retry-After"] == "1"
    assert statuses[-4:] == [200] * 4, statuses  # the engine dropped the dead connections
    assert node.heartbeat().status_code == 200
    # The leader's lock connection died too: leadership comes back.
    eventually(
        lambda: httpx.get(f"{coordinator.url}/v1/status", headers=headers()).json()["leader"],
        timeout=10,
    )


async def _pg_value(statement: str) -> int:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        return int(await conn.fetchval(statement))
    finally:
        await conn.close()


def client(ops: set[Operation], subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.mint(SECRET, ops=ops, subject=subject)}"}


def view_of(coordinator: CoordinatorProcess, blob_id: str) -> dict[str, object]:
    answer = httpx.get(f"{coordinator.url}/v1/blobs/{blob_id}", headers=headers(Operation.ADMIN))
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def test_a_strangers_weak_placement_cannot_weaken_the_victims(start_coordinator: Start) -> None:
    """Placement poisoning: a stranger places the victim's sha256 first with one replica
    and a 20 s expiry; the victim's upload lands and keeps what the victim asked for."""
    coordinator = start_coordinator(replicas=3)
    node = FakeNode(coordinator.url, "n1")
    node.register()
    url = f"{coordinator.url}/v1/placements"
    weak = {"size": 100, "sha256": BLOB_A, "replicas": 1, "expires_at": time.time() + 20}
    stranger = httpx.post(url, json=weak, headers=client({Operation.WRITE}, "stranger"))
    assert stranger.status_code == 200
    victim = httpx.post(
        url, json={"size": 100, "sha256": BLOB_A}, headers=client({Operation.WRITE}, "victim")
    )
    assert victim.status_code == 200
    node.heartbeat(added={BLOB_A: 100})
    view = view_of(coordinator, BLOB_A)
    assert view["target"] == 3 and view["pinned"] is True and view["expires_at"] is None

    # Without a sha256 the commit is matched by primary and size: the same holds.
    weak_unnamed = {"size": 200, "replicas": 1, "expires_at": time.time() + 20}
    assert httpx.post(url, json=weak_unnamed, headers=client({Operation.WRITE}, "stranger"))
    assert httpx.post(
        url, json={"size": 200, "replicas": 2}, headers=client({Operation.WRITE}, "v")
    )
    node.heartbeat(added={BLOB_B: 200})
    view = view_of(coordinator, BLOB_B)
    assert view["target"] == 2 and view["pinned"] is True and view["expires_at"] is None


def test_a_client_deletes_only_what_it_placed(start_coordinator: Start) -> None:
    """A portal (a client with ``delete``) cannot delete a blob an SDK user uploaded,
    even pinned; the blob goes when the last client that placed it lets go."""
    coordinator = start_coordinator(replicas=1)
    node = FakeNode(coordinator.url, "n1")
    node.register()
    url = f"{coordinator.url}/v1/placements"
    for owner in ("lab-sdk", "labportal"):
        body = {"size": 100, "sha256": BLOB_A}
        assert (
            httpx.post(url, json=body, headers=client({Operation.WRITE}, owner)).status_code == 200
        )
    node.heartbeat(added={BLOB_A: 100})
    blob_url = f"{coordinator.url}/v1/blobs/{BLOB_A}"

    reader = httpx.delete(blob_url, headers=client({Operation.READ, Operation.WRITE}, "lab-sdk"))
    assert reader.status_code == 403  # the next-narrower token: no delete at all
    stranger = httpx.delete(blob_url, headers=client({Operation.DELETE}, "stranger"))
    assert stranger.status_code == 204 and view_of(coordinator, BLOB_A)["status"] != "deleted"
    portal = httpx.delete(blob_url, headers=client({Operation.DELETE}, "labportal"))
    assert portal.status_code == 204 and view_of(coordinator, BLOB_A)["status"] != "deleted"
    sdk = httpx.delete(blob_url, headers=client({Operation.DELETE}, "lab-sdk"))
    assert sdk.status_code == 204 and view_of(coordinator, BLOB_A)["status"] == "deleted"

    # Adopted (nobody placed it): only an operator deletes it.
    node.heartbeat(added={BLOB_B: 7})
    adopted = f"{coordinator.url}/v1/blobs/{BLOB_B}"
    assert httpx.delete(adopted, headers=client({Operation.DELETE}, "labportal")).status_code == 204
    assert view_of(coordinator, BLOB_B)["status"] != "deleted"
    assert httpx.delete(adopted, headers=headers(Operation.ADMIN)).status_code == 204
    assert view_of(coordinator, BLOB_B)["status"] == "deleted"

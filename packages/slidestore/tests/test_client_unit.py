"""Client SDK pieces that need no server: error mapping, hashing, tus headers, ordering."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from pathlib import Path

import pytest

import slidestore
from slidestore import errors
from slidestore.client import AsyncCluster, Cluster, error_from
from slidestore.client.hashing import chunk_checksum, read_at, sha256_file
from slidestore.client.http import Transport, backoff_delay
from slidestore.client.replicas import ReplicaSet, readable_urls
from slidestore.client.tus import metadata_header
from slidestore.cluster import wire
from slidestore.cluster.errors import (
    NodeUnknown,
    NoPlacement,
    NotArchived,
    TooManyWaits,
    WaitTimeout,
)
from slidestore.cluster.model import NodeState


def body(code: str, detail: str) -> bytes:
    return f'{{"error": "{code}", "detail": "{detail}"}}'.encode()


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (404, "blob_not_found", errors.BlobNotFound),
        (403, "forbidden", errors.Forbidden),
        (401, "invalid_token", errors.InvalidToken),
        (401, "token_expired", errors.TokenExpired),
        (507, "insufficient_storage", errors.InsufficientStorage),
        (507, "no_placement", NoPlacement),  # an InsufficientStorage
        (460, "checksum_mismatch", errors.ChecksumMismatch),
        (409, "upload_offset_mismatch", errors.UploadOffsetMismatch),
        (422, "unsupported_format", errors.UnsupportedFormat),
        (404, "out_of_bounds", errors.OutOfBounds),
        # Unknown codes fall back to the status.
        (404, "not_found", errors.BlobNotFound),
        (403, "something_new", errors.Forbidden),
        (408, "wait_timeout", WaitTimeout),  # a ReplicationTimeout
        (404, "node_unknown", NodeUnknown),
        (429, "too_many_waits", TooManyWaits),
        (409, "not_archived", NotArchived),
        (503, "unavailable", errors.ClusterUnavailable),
        (418, "teapot", errors.SlidestoreError),
    ],
)
def test_error_from_maps_code_then_status(
    status: int, code: str, expected: type[errors.SlidestoreError]
) -> None:
    exc = error_from(status, body(code, "the server's words"), context="GET /x")
    assert type(exc) is expected
    assert "the server's words" in str(exc)
    assert str(status) in str(exc) and "GET /x" in str(exc)


def test_error_from_without_json_body() -> None:
    exc = error_from(401, b"")
    assert type(exc) is errors.InvalidToken
    assert isinstance(exc, PermissionError)
    assert "401" in str(exc)
    assert "gateway down" in str(error_from(502, b"gateway down"))


def test_cluster_unavailable_is_a_connection_error() -> None:
    assert issubclass(errors.ClusterUnavailable, ConnectionError)
    assert issubclass(errors.ClusterUnavailable, errors.SlidestoreError)
    assert issubclass(errors.ReplicationTimeout, TimeoutError)


def test_sha256_file_streams_in_chunks(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 + 17)
    path = tmp_path / "f"
    path.write_bytes(data)
    seen: list[int] = []
    assert sha256_file(path, chunk_size=1024, progress=seen.append) == (
        hashlib.sha256(data).hexdigest()
    )
    assert seen == [1024, 1024, 1024, 17]


def test_read_at_and_chunk_checksum(tmp_path: Path) -> None:
    data = bytes(range(256)) * 10
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert read_at(fd, 100, 50) == data[100:150]
        assert read_at(fd, len(data) - 5, 50) == data[-5:]
        assert read_at(fd, len(data), 50) == b""
    finally:
        os.close(fd)
    algorithm, encoded = chunk_checksum(b"abc").split(" ")
    assert algorithm == "sha256"
    assert base64.b64decode(encoded) == hashlib.sha256(b"abc").digest()


def test_metadata_header_is_tus_encoding() -> None:
    header = metadata_header({"filename": "a b.svs", "sha256": "ab" * 32})
    pairs = dict(pair.split(" ") for pair in header.split(","))
    assert base64.b64decode(pairs["filename"]) == b"a b.svs"
    assert base64.b64decode(pairs["sha256"]) == b"ab" * 32


def test_backoff_grows_and_is_capped() -> None:
    for attempt in range(1, 12):
        delay = backoff_delay(attempt, 0.1, 2.0)
        assert (
            0.5 * min(2.0, 0.1 * 2 ** (attempt - 1)) <= delay <= min(2.0, 0.1 * 2 ** (attempt - 1))
        )


def test_readable_urls_skip_dead_and_put_alive_first() -> None:
    views = [
        wire.ReplicaView(node_id="s", url="http://s/", state=NodeState.SUSPECT),
        wire.ReplicaView(node_id="d", url="http://d", state=NodeState.DEAD),
        wire.ReplicaView(node_id="a", url="http://a", state=NodeState.ALIVE),
    ]
    assert readable_urls(views) == ["http://a", "http://s"]


def test_replica_order_prefers_working_and_demotes_failed() -> None:
    transport = Transport("http://coordinator")
    replicas = ReplicaSet("0" * 64, ["http://a", "http://b", "http://c"], transport=transport)
    replicas.mark_down("http://a")
    assert replicas.ordered() == ["http://b", "http://c", "http://a"]
    replicas.mark_up("http://c")
    assert replicas.ordered() == ["http://c", "http://b", "http://a"]
    replicas.down_for = 0
    replicas.mark_down("http://c")
    assert replicas.ordered()[0] == "http://c"  # down_for elapsed: back in its place


def test_transport_needs_a_url() -> None:
    with pytest.raises(errors.InvalidRequest):
        Transport([])


def test_unreachable_coordinator_is_cluster_unavailable() -> None:
    async def go() -> None:
        # Port 9 on loopback: nothing listens, the connection is refused at once.
        async with AsyncCluster(["http://127.0.0.1:9"], "t", retries=1, backoff=0.01) as c:
            await c.nodes()

    with pytest.raises(errors.ClusterUnavailable, match="no coordinator answered"):
        asyncio.run(go())


def test_top_level_exports() -> None:
    assert slidestore.connect is not None and slidestore.aconnect is not None
    with slidestore.connect("http://127.0.0.1:9", "t", retries=0) as cluster:
        assert isinstance(cluster, Cluster)
        with pytest.raises(errors.ClusterUnavailable):
            cluster.info("0" * 64)
    with pytest.raises(AttributeError):
        _ = slidestore.no_such_name


def test_aconnect_can_be_awaited() -> None:
    async def go() -> AsyncCluster:
        cluster = await slidestore.aconnect("http://127.0.0.1:9")
        await cluster.aclose()
        return cluster

    assert isinstance(asyncio.run(go()), AsyncCluster)


def test_the_hedge_delay_follows_the_recent_p99_within_its_bounds() -> None:
    from slidestore.client.hedging import HedgePolicy

    policy = HedgePolicy(floor=0.05, ceiling=1.0)
    assert policy.delay() == 0.5  # too few reads yet: half the ceiling
    for _ in range(98):
        policy.record(0.01)
    policy.record(0.3)
    policy.record(0.3)
    assert policy.delay() == pytest.approx(0.3)  # the 99th of 100 sorted reads is the p99
    for _ in range(256):
        policy.record(0.001)
    assert policy.delay() == 0.05  # never below the floor: fast reads must not all hedge
    for _ in range(256):
        policy.record(20.0)
    assert policy.delay() == 1.0  # nor above the ceiling: a frozen node holds a read 1 s

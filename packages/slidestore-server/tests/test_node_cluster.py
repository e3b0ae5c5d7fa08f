"""The storage node's side of the cluster, with real processes on loopback: node id,
registration and heartbeats against a real (recording) coordinator, replica pulls between
two nodes, the scrubber, a coordinator that is down, and one agent per multi-worker node."""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from coordinator_kit import NODE_SECRET

from slidestore import tokens
from slidestore.blobs import BlobStore, archive_codec, fanout, tile_map
from slidestore.cluster.wire import Heartbeat, Register
from slidestore.testing.paths import shared_data_dir
from slidestore.tokens import Operation
from slidestore_server.testing import NodeProcess, free_port
from slidestore_server.testing_coordinator import Received, RecordingCoordinator

SECRET = NODE_SECRET  # what the start_node fixture configures
SMALL_SVS = (shared_data_dir() / "small.svs").read_bytes()
MB = 1 << 20
StartNode = Callable[..., NodeProcess]


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.mint(SECRET, ops={Operation.ADMIN}, ttl=600)}"}


def new_slide() -> bytes:
    """A valid slide with unique content (OpenSlide ignores trailing bytes)."""
    return SMALL_SVS + os.urandom(64)


def upload(node: NodeProcess, data: bytes) -> str:
    """One tus creation-with-upload request; returns the committed blob id."""
    answer = httpx.post(
        node.url + "/uploads",
        content=data,
        headers={
            **admin(),
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(data)),
            "Content-Type": "application/offset+octet-stream",
        },
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    blob_id = answer.headers["Slidestore-Blob-Id"]
    assert blob_id == hashlib.sha256(data).hexdigest()
    return blob_id


def blob_file(node: NodeProcess, blob_id: str) -> Path:
    return node.data_dir / "blobs" / fanout(blob_id)


def flip_byte(path: Path, offset: int = 100) -> None:
    os.chmod(path, 0o644)  # blobs are stored read-only
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def heartbeats_of(coordinator: RecordingCoordinator) -> list[Heartbeat]:
    return [r.message for r in coordinator.messages("heartbeat")]  # type: ignore[misc]


def added(r: Received) -> set[str]:
    return {b.blob_id for b in r.message.added} if isinstance(r.message, Heartbeat) else set()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture
def coordinator() -> Iterator[RecordingCoordinator]:
    # A long interval: a heartbeat that arrives quickly was triggered by an event.
    with RecordingCoordinator(secret=SECRET, heartbeat_interval=5.0) as running:
        yield running


# -- identity --------------------------------------------------------------------------


def test_node_id_is_created_once_and_shown_in_healthz(start_node: StartNode) -> None:
    node = start_node()
    node_id = (node.data_dir / "node_id").read_text().strip()
    assert len(node_id) == 32 and int(node_id, 16) >= 0
    assert httpx.get(node.url + "/healthz").json() == {"status": "ok", "node_id": node_id}
    node.restart()
    assert httpx.get(node.url + "/healthz").json()["node_id"] == node_id


# -- registration and heartbeats ----------------------------------------------------------


def test_registers_inventory_then_heartbeats_uploads_and_deletes_at_once(
    coordinator: RecordingCoordinator, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    existing = os.urandom(MB + 7)  # any bytes: blobs put directly need not be slides
    existing_id = BlobStore(data_dir / "blobs", reserve_bytes=0).put(existing)
    with NodeProcess(
        data_dir, settings={"secret": SECRET, "coordinator_url": coordinator.url}
    ) as node:
        node_id = httpx.get(node.url + "/healthz").json()["node_id"]
        registered = coordinator.wait_for(lambda r: r.kind == "register").message
        assert isinstance(registered, Register)
        assert registered.node_id == node_id
        assert registered.url == node.url
        assert [(b.blob_id, b.size) for b in registered.inventory] == [(existing_id, len(existing))]
        assert registered.report.used_bytes == len(existing)
        assert 0 < registered.report.free_bytes <= registered.report.capacity_bytes
        assert registered.report.reserve_bytes == 1 << 30

        slide = new_slide()
        blob_id = upload(node, slide)
        uploaded_at = time.monotonic()
        seen = coordinator.wait_for(lambda r: blob_id in added(r), timeout=3)
        assert seen.at - uploaded_at < 0.5, "the commit did not trigger a heartbeat"
        assert isinstance(seen.message, Heartbeat)
        assert seen.message.report.used_bytes == len(existing) + len(slide)

        answer = httpx.delete(f"{node.url}/blobs/{existing_id}", headers=admin())
        assert answer.status_code == 204
        deleted_at = time.monotonic()
        gone = coordinator.wait_for(
            lambda r: isinstance(r.message, Heartbeat) and existing_id in r.message.removed,
            timeout=3,
        )
        assert gone.at - deleted_at < 1.0
        # Each change is reported once: later heartbeats carry nothing new.
        time.sleep(0.3)
        reports = [hb for hb in heartbeats_of(coordinator) if hb.added or hb.removed]
        assert [({b.blob_id for b in hb.added}, set(hb.removed)) for hb in reports] == [
            ({blob_id}, set()),
            (set(), {existing_id}),
        ]


def test_changes_survive_failed_heartbeats_and_forgotten_registration(
    start_node: StartNode, coordinator: RecordingCoordinator
) -> None:
    node = start_node(coordinator_url=coordinator.url, heartbeat_interval=0.2)
    register = coordinator.wait_for(lambda r: r.kind == "register")
    coordinator.fail_heartbeats = True
    blob_id = upload(node, new_slide())
    wait_until(lambda: coordinator.refused >= 2)
    assert not any(blob_id in added(r) for r in coordinator.messages())
    coordinator.fail_heartbeats = False
    coordinator.wait_for(lambda r: blob_id in added(r), timeout=8)

    # The coordinator forgets the node: the next heartbeat is refused, the node registers
    # again with its complete inventory.
    count = len(coordinator.messages("register"))
    coordinator.forget(register.node_id)
    wait_until(lambda: len(coordinator.messages("register")) > count, timeout=8)
    again = coordinator.messages("register")[-1].message
    assert isinstance(again, Register)
    assert {b.blob_id for b in again.inventory} == {blob_id}


def test_capacity_override_caps_reported_and_usable_space(
    start_node: StartNode, coordinator: RecordingCoordinator
) -> None:
    capacity = 3 * MB
    node = start_node(coordinator_url=coordinator.url, capacity_bytes=capacity, reserve_bytes=0)
    first = coordinator.wait_for(lambda r: r.kind == "register").message
    assert isinstance(first, Register)
    assert (first.report.capacity_bytes, first.report.free_bytes) == (capacity, capacity)
    slide = new_slide()
    blob_id = upload(node, slide)
    seen = coordinator.wait_for(lambda r: blob_id in added(r), timeout=3).message
    assert isinstance(seen, Heartbeat)
    # The slide, plus the little the node keeps beside it (checksum sidecar, ledger entry).
    assert capacity - len(slide) - 64 * 1024 <= seen.report.free_bytes <= capacity - len(slide)
    # The cap is real: the node refuses bytes beyond it.
    answer = httpx.post(
        node.url + "/uploads",
        headers={**admin(), "Tus-Resumable": "1.0.0", "Upload-Length": str(capacity)},
    )
    assert answer.status_code == 507, answer.text


# -- replicas ------------------------------------------------------------------------------


@pytest.fixture
def pair(start_node: StartNode) -> tuple[NodeProcess, NodeProcess]:
    return start_node(), start_node()


def put_on(node: NodeProcess, data: bytes) -> str:
    return BlobStore(node.data_dir / "blobs", reserve_bytes=0).put(data)


def replicate(target: NodeProcess, **order: object) -> httpx.Response:
    return httpx.post(target.url + "/replicas", json=order, headers=admin(), timeout=60)


def temp_files(node: NodeProcess) -> list[Path]:
    return list((node.data_dir / "blobs" / ".tmp").iterdir())


def test_replica_is_pulled_verified_and_not_copied_twice(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    source, target = pair
    data = os.urandom(3 * MB + 11)
    blob_id = put_on(source, data)
    answer = replicate(target, blob_id=blob_id, size=len(data), source_url=source.url)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["blob_id"], body["size"], body["copied_bytes"]) == (blob_id, len(data), len(data))
    copy = httpx.get(f"{target.url}/blobs/{blob_id}", headers=admin()).content
    assert hashlib.sha256(copy).hexdigest() == blob_id

    again = replicate(target, blob_id=blob_id, size=len(data), source_url=source.url)
    assert again.status_code == 200, again.text
    assert again.json()["copied_bytes"] == 0


def test_corrupt_source_is_refused_and_nothing_kept(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    source, target = pair
    data = os.urandom(2 * MB)
    blob_id = put_on(source, data)
    flip_byte(blob_file(source, blob_id), offset=MB + 5)
    answer = replicate(target, blob_id=blob_id, size=len(data), source_url=source.url)
    assert answer.status_code == 502, answer.text
    assert answer.json()["error"] == "source_corrupt"
    assert not blob_file(target, blob_id).exists()
    assert temp_files(target) == []


def test_unreachable_or_empty_source_is_source_unavailable(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    source, target = pair
    blob_id = hashlib.sha256(b"nowhere").hexdigest()
    for source_url in (f"http://127.0.0.1:{free_port()}", source.url):
        answer = replicate(target, blob_id=blob_id, size=7, source_url=source_url)
        assert answer.status_code == 502, answer.text
        assert answer.json()["error"] == "source_unavailable"
    bad = replicate(target, blob_id=blob_id, size=7)  # no source at all
    assert bad.status_code == 400
    assert temp_files(target) == []


def test_replica_copy_respects_the_bandwidth_cap(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    source, target = pair
    data = os.urandom(4 * MB)
    blob_id = put_on(source, data)
    cap = 2 * MB
    started = time.monotonic()
    answer = replicate(
        target, blob_id=blob_id, size=len(data), source_url=source.url, bytes_per_second=cap
    )
    elapsed = time.monotonic() - started
    assert answer.status_code == 201, answer.text
    assert elapsed >= 0.95 * len(data) / cap
    assert answer.json()["seconds"] >= 0.95 * len(data) / cap


def test_replica_from_the_archive(start_node: StartNode, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    target = start_node(archive_url=archive.as_uri())
    data = os.urandom(MB + 3)
    blob_id = hashlib.sha256(data).hexdigest()
    (archive / blob_id).write_bytes(data)
    answer = replicate(
        target, blob_id=blob_id, size=len(data), archive_url=f"{archive.as_uri()}/{blob_id}"
    )
    assert answer.status_code == 201, answer.text
    assert blob_file(target, blob_id).read_bytes() == data
    absent = hashlib.sha256(b"x").hexdigest()
    missing = replicate(target, blob_id=absent, size=1, archive_url=f"{archive.as_uri()}/{absent}")
    assert missing.status_code == 502
    assert missing.json()["error"] == "source_unavailable"
    assert str(archive) not in missing.text  # the blob is named, not the archive's path


def test_replica_from_a_jpeg_xl_archive_and_a_corrupt_one_refused(
    start_node: StartNode, tmp_path: Path
) -> None:
    """A ``.ssjx`` object decodes into the blob; one trampled mid-tile is 502
    ``source_corrupt`` (named, not a 500) and leaves nothing behind."""
    if not archive_codec.jpegxl_available():
        pytest.skip("imagecodecs built without JPEG XL")
    archive = tmp_path / "archive"
    archive.mkdir()
    path = shared_data_dir() / "CMU-1-Small-Region.svs"
    data = path.read_bytes()
    blob_id = hashlib.sha256(data).hexdigest()
    encoder = archive_codec.JpegXlEncoder(tile_map.read_tile_map(path))
    stored = encoder.feed(data) + encoder.finish()
    name = archive_codec.object_name(blob_id, archive_codec.Encoding.JPEGXL)
    at = stored.index(b"J", len(archive_codec.MAGIC)) + archive_codec.HEADER.size + 40
    (archive / name).write_bytes(stored[:at] + bytes(300) + stored[at + 300 :])
    target = start_node(archive_url=archive.as_uri())
    order = {"blob_id": blob_id, "size": len(data), "archive_url": f"{archive.as_uri()}/{name}"}
    corrupt = replicate(target, **order)
    assert corrupt.status_code == 502, corrupt.text
    assert corrupt.json()["error"] == "source_corrupt" and blob_id in corrupt.text
    assert not blob_file(target, blob_id).exists() and temp_files(target) == []
    (archive / name).write_bytes(stored)
    answer = replicate(target, **order)
    assert answer.status_code == 201, answer.text
    assert hashlib.sha256(blob_file(target, blob_id).read_bytes()).hexdigest() == blob_id


def test_archive_pulls_read_only_the_blob_in_the_nodes_archive(
    start_node: StartNode, tmp_path: Path
) -> None:
    archive, elsewhere = tmp_path / "archive", tmp_path / "elsewhere"
    archive.mkdir()
    elsewhere.mkdir()
    data = os.urandom(MB)
    blob_id = hashlib.sha256(data).hexdigest()
    outside = elsewhere / blob_id
    outside.write_bytes(data)
    (archive / "other").write_bytes(data)
    configured = start_node(archive_url=archive.as_uri())
    unconfigured = start_node()
    refused = [
        replicate(configured, blob_id=blob_id, size=len(data), archive_url=outside.as_uri()),
        replicate(
            configured,
            blob_id=blob_id,
            size=len(data),
            archive_url=f"{archive.as_uri()}/../elsewhere/{blob_id}",
        ),
        replicate(
            configured, blob_id=blob_id, size=len(data), archive_url=f"{archive.as_uri()}/other"
        ),
        # No archive configured: not even the right file is read.
        replicate(unconfigured, blob_id=blob_id, size=len(data), archive_url=outside.as_uri()),
    ]
    for answer in refused:
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"] == "forbidden"
    for node in (configured, unconfigured):
        assert not blob_file(node, blob_id).exists()
        assert temp_files(node) == []  # refused before a writer (or the source) was opened


# -- scrubbing -----------------------------------------------------------------------------


def test_scrub_quarantines_a_flipped_byte_and_reports_it(
    start_node: StartNode, coordinator: RecordingCoordinator
) -> None:
    node = start_node(coordinator_url=coordinator.url)
    good, bad = upload(node, new_slide()), upload(node, new_slide())
    coordinator.wait_for(lambda r: bad in added(r), timeout=3)
    flip_byte(blob_file(node, bad))
    answer = httpx.post(node.url + "/admin/scrub", headers=admin(), timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["quarantined"] == [bad]
    report = coordinator.wait_for(
        lambda r: isinstance(r.message, Heartbeat) and bad in r.message.quarantined, timeout=3
    ).message
    assert isinstance(report, Heartbeat)
    assert bad not in report.removed  # quarantined, not deleted: reported once, as such
    assert httpx.get(f"{node.url}/blobs/{bad}", headers=admin()).status_code == 404
    assert httpx.get(f"{node.url}/blobs/{good}", headers=admin()).status_code == 200


def test_background_scrubber_finds_corruption(start_node: StartNode) -> None:
    node = start_node(scrub_interval_seconds=0.3, scrub_bytes_per_second=100 * MB)
    blob_id = upload(node, new_slide())
    flip_byte(blob_file(node, blob_id))
    quarantine = node.data_dir / "blobs" / ".quarantine"
    wait_until(lambda: any(p.name.startswith(blob_id) for p in quarantine.iterdir()))
    assert not blob_file(node, blob_id).exists()


# -- faults --------------------------------------------------------------------------------


def test_node_serves_without_coordinator_and_joins_when_it_appears(
    start_node: StartNode,
) -> None:
    port = free_port()
    node = start_node(coordinator_url=f"http://127.0.0.1:{port}", heartbeat_interval=0.2)
    blob_id = upload(node, new_slide())
    assert httpx.get(f"{node.url}/blobs/{blob_id}", headers=admin()).status_code == 200
    ready = httpx.get(node.url + "/readyz")
    assert ready.status_code == 503
    assert "coordinator" in " ".join(ready.json()["problems"])

    with RecordingCoordinator(secret=SECRET, port=port, heartbeat_interval=0.2) as coordinator:
        registered = coordinator.wait_for(lambda r: r.kind == "register", timeout=10).message
        assert isinstance(registered, Register)
        assert [b.blob_id for b in registered.inventory] == [blob_id]
        wait_until(lambda: httpx.get(node.url + "/readyz").status_code == 200)
    # Gone again: within a few missed heartbeats the node says it is not ready.
    wait_until(lambda: httpx.get(node.url + "/readyz").status_code == 503, timeout=6)
    assert httpx.get(node.url + "/healthz").status_code == 200


def test_multi_worker_node_runs_exactly_one_agent(
    start_node: StartNode, coordinator: RecordingCoordinator
) -> None:
    node = start_node(coordinator_url=coordinator.url, workers=2, heartbeat_interval=0.2)
    coordinator.wait_for(lambda r: r.kind == "register")
    # Uploads land on either worker; each must reach the coordinator quickly (the other
    # worker signals the agent through the data directory).
    for _ in range(6):
        blob_id = upload(node, new_slide())
        done = time.monotonic()
        seen = coordinator.wait_for(lambda r, b=blob_id: b in added(r), timeout=3)
        assert seen.at - done < 1.0
    assert len(coordinator.messages("register")) == 1
    senders = {r.user_agent for r in coordinator.messages()}
    assert len(senders) == 1, senders
    # The agent's lock is held by a live worker.
    fd = os.open(node.data_dir / "agent.lock", os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)

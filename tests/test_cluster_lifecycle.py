"""The life of a slide after it is read, on a real cluster (a coordinator and nodes as
processes on loopback, SQLite and PostgreSQL): last access tracked from the nodes' read
paths, blobs unused for their idle period archived (zstd where it pays, a real scan as
JPEG XL where the operator chose it, thumbnail kept), restored bit for bit to R copies, kill -9 in the middle of both, deletes reaching the
archive, and only an operator's token archiving or restoring.

Days pass through the coordinator's ``SLIDESTORE_CLOCK_FILE`` (seconds added to its
retention clock), never by sleeping.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import slidestore
from slidestore import errors, tokens
from slidestore.blobs import archive_codec
from slidestore.cluster.wire import BlobStatus
from slidestore.testing import cached_svs
from slidestore.tokens import Operation
from slidestore_server.testing_cluster import Cluster, database, empty_database, eventually

DAY = 86400.0
R = 3


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def make_cluster(tmp_path: Path, database_url: str) -> Iterator[Callable[..., Cluster]]:
    started: list[Cluster] = []

    def make(**options: Any) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster{len(started)}", database_url=database_url, **options)
        started.append(cluster)
        return cluster.start()

    yield make
    for cluster in started:
        cluster.close()
        for name, text in cluster.logs():
            print(f"---- {name} (last 40 lines)")
            print("\n".join(text.splitlines()[-40:]))


@pytest.fixture
def slide(tmp_path: Path) -> Callable[[int, int], Path]:
    """``slide(n, tail)``: a distinct blob — a generated slide with ``tail`` random bytes
    and ``n`` appended after its last byte (TIFF readers ignore them)."""
    base = cached_svs(2000, 1500, seed=11).read_bytes()
    directory = tmp_path / "slides"
    directory.mkdir()

    def make(n: int, tail: int = 0) -> Path:
        path = directory / f"slide-{n}.svs"
        path.write_bytes(base + secrets.token_bytes(tail) + f"\n#variant {n}\n".encode())
        return path

    return make


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def set_clock(path: Path, days: float) -> None:
    """Move the coordinator's retention clock to ``days`` ahead (it reads the file whenever
    it stamps an access or looks for idle blobs)."""
    partial = path.with_suffix(".partial")
    partial.write_text(str(days * DAY))
    partial.rename(path)


def read_tile(cluster: Cluster, blob_id: str) -> None:
    """A viewer's Deep Zoom tile from every holder (a read token of that blob)."""
    token = tokens.mint(
        cluster.secret, ops={Operation.READ}, blob=blob_id, ttl=60, subject="viewer"
    )
    for replica in cluster.blob(blob_id).replicas:
        answer = httpx.get(
            f"{replica.url}/slides/{blob_id}_files/11/0_0.jpeg", params={"token": token}
        )
        assert answer.status_code == 200, answer.text


def admin(cluster: Cluster) -> slidestore.Cluster:
    return slidestore.connect(cluster.coordinator.url, cluster.token(Operation.ADMIN), backoff=0.05)


def archive_files(archive: Path) -> set[str]:
    return {p.name for p in archive.iterdir()} if archive.exists() else set()


def receiving(cluster: Cluster) -> list[int]:
    """Nodes writing a copy right now (a temp file of the blob store)."""
    return [
        index
        for index, node in enumerate(cluster.nodes)
        if any((node.data_dir / "blobs" / ".tmp").glob("w-*.tmp"))
    ]


def test_idle_slides_are_archived_shown_restored_and_deleted(
    make_cluster: Callable[..., Cluster], slide: Callable[..., Path], tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    clock = tmp_path / "clock"
    set_clock(clock, 0)
    cluster = make_cluster(
        nodes=3,
        coordinator_settings={
            "archive_url": f"file://{archive}",
            "archive_idle_days": 7,
            "clock_file": str(clock),
        },
    )
    unused, used = slide(1), slide(2)
    with cluster.client() as sdk:
        idle_id = sdk.upload(unused, wait="all", progress=False)
        busy_id = sdk.upload(used, wait="all", progress=False)

    # Reads reach the coordinator with the next heartbeat: last access is stamped.
    read_tile(cluster, busy_id)
    eventually(lambda: cluster.blob(busy_id).last_access is not None, timeout=10)
    assert cluster.blob(idle_id).last_access is None

    # Six days on: nothing is idle for seven yet. The used slide is read again then.
    set_clock(clock, 6)
    stamped = cluster.blob(busy_id).last_access
    read_tile(cluster, busy_id)
    eventually(
        lambda: (cluster.blob(busy_id).last_access or 0) > (stamped or 0) + 5 * DAY, timeout=10
    )
    assert cluster.blob(idle_id).status is BlobStatus.OK

    # Eight days on: the unused one is 8 days idle (archived), the used one 2 (kept).
    set_clock(clock, 8)
    view = eventually(
        lambda: (v := cluster.blob(idle_id)).status is BlobStatus.ARCHIVED and v, timeout=30
    )
    assert cluster.blob(busy_id).status is BlobStatus.OK
    assert len(cluster.blob(busy_id).replicas) == R
    # The copies are gone from every node; the archive holds blob, thumbnail, manifest.
    eventually(lambda: not cluster.disk_hashes(idle_id), timeout=20)
    assert view.archive_url is not None and view.archive_bytes and view.archive_encoding
    name = view.archive_url.rsplit("/", 1)[1]
    assert {name, f"{idle_id}.json", f"{idle_id}.thumbnail.jpg"} <= archive_files(archive)
    assert view.archive_bytes == (archive / name).stat().st_size

    # The portal still shows it: the thumbnail is served from the archive (read token).
    read_only = tokens.mint(cluster.secret, ops={Operation.READ}, blob=idle_id, ttl=60)
    thumb = httpx.get(
        f"{cluster.coordinator.url}/v1/blobs/{idle_id}/thumbnail", params={"token": read_only}
    )
    assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"
    other = tokens.mint(cluster.secret, ops={Operation.READ}, blob=busy_id, ttl=60)
    refused = httpx.get(
        f"{cluster.coordinator.url}/v1/blobs/{idle_id}/thumbnail", params={"token": other}
    )
    assert refused.status_code == 403

    # Space saved: R copies freed, minus the archived object (gauges refresh every 5 s).
    size = unused.stat().st_size
    metrics = eventually(
        lambda: (m := cluster.metrics()).get("slidestore_cluster_archived_blobs") == 1 and m,
        timeout=15,
    )
    assert metrics["slidestore_cluster_archive_saved_bytes"] == R * size - view.archive_bytes

    # Only an operator restores or archives: read/write/delete tokens are refused.
    with cluster.client() as sdk:
        with pytest.raises(errors.Forbidden):
            sdk.restore(idle_id)
        with pytest.raises(errors.Forbidden):
            sdk.archive(busy_id)
        with pytest.raises(errors.Forbidden):
            sdk.set_lifecycle(busy_id, 1)
    # An operator's token for one blob (what the portal mints) restores that blob only.
    scoped = tokens.mint(cluster.secret, ops={Operation.ADMIN}, blob=busy_id, ttl=60)
    with slidestore.connect(cluster.coordinator.url, scoped, backoff=0.05) as narrow:
        with pytest.raises(errors.Forbidden):
            narrow.restore(idle_id)
    assert cluster.blob(idle_id).status is BlobStatus.ARCHIVED

    # Restore: R copies come back, each bit for bit the original.
    with admin(cluster) as operator:
        restoring = operator.restore(idle_id)
        assert restoring.status in (BlobStatus.RESTORING, BlobStatus.OK)
    restored = cluster.wait_durable(idle_id, R, timeout=60)
    assert restored.status is BlobStatus.OK and len(restored.replicas) == R
    assert set(cluster.disk_hashes(idle_id).values()) == {sha256_of(unused.read_bytes())}
    download = tokens.mint(cluster.secret, ops={Operation.DOWNLOAD}, blob=idle_id, ttl=60)
    body = httpx.get(
        f"{restored.replicas[0].url}/blobs/{idle_id}", params={"token": download}
    ).content
    assert body == unused.read_bytes()
    # The restore counts as a use: not archived again at the next pass.
    assert cluster.blob(idle_id).status is BlobStatus.OK

    # Deleting an archived blob removes its archive too (manifest, object, thumbnail).
    with admin(cluster) as operator:
        operator.archive(idle_id)
        eventually(lambda: operator.info(idle_id).status is BlobStatus.ARCHIVED, timeout=30)
        operator.delete(idle_id)
    eventually(lambda: not any(n.startswith(idle_id) for n in archive_files(archive)), timeout=20)
    assert cluster.blob(idle_id).status is BlobStatus.DELETED
    assert cluster.blob(idle_id).archive_url is None


def test_a_real_slide_is_archived_as_jpeg_xl_and_restored_bit_for_bit(
    make_cluster: Callable[..., Cluster], sample_slide_path: Path, tmp_path: Path
) -> None:
    """CMU-1-Small-Region.svs archived by the coordinator from a node's tile map: stored as
    the JPEG XL container, smaller than zstd would make it, and restored from it to R
    nodes, each copy the original's sha256."""
    archive = tmp_path / "archive"
    cluster = make_cluster(
        nodes=3,
        coordinator_settings={"archive_url": f"file://{archive}", "archive_jpegxl": True},
    )
    original = sample_slide_path.read_bytes()
    with cluster.client() as sdk:
        blob_id = sdk.upload(sample_slide_path, wait="all", progress=False)
    assert blob_id == sha256_of(original)
    with admin(cluster) as operator:
        operator.archive(blob_id)
        view = eventually(
            lambda: (v := operator.info(blob_id)).status is BlobStatus.ARCHIVED and v, timeout=60
        )
        eventually(lambda: not cluster.disk_hashes(blob_id), timeout=20)
        assert view.archive_encoding == "jpegxl" and view.archive_url is not None
        assert view.archive_url.endswith(f"/{blob_id}.ssjx")
        zstd = archive_codec.ArchiveEncoder()
        zstd_bytes = len(zstd.feed(original) + zstd.finish())
        assert view.archive_bytes == (archive / f"{blob_id}.ssjx").stat().st_size
        assert view.archive_bytes is not None and view.archive_bytes < 0.92 * zstd_bytes
        print(f"archived {len(original)} -> {view.archive_bytes} (zstd: {zstd_bytes})")
        operator.restore(blob_id)
    restored = cluster.wait_durable(blob_id, R, timeout=90)
    assert restored.status is BlobStatus.OK and len(restored.replicas) == R
    assert set(cluster.disk_hashes(blob_id).values()) == {blob_id}
    download = tokens.mint(cluster.secret, ops={Operation.DOWNLOAD}, blob=blob_id, ttl=60)
    body = httpx.get(f"{restored.replicas[0].url}/blobs/{blob_id}", params={"token": download})
    assert sha256_of(body.content) == blob_id


def test_kill9_mid_archive_and_mid_restore_loses_nothing(
    make_cluster: Callable[..., Cluster], slide: Callable[..., Path], tmp_path: Path
) -> None:
    """Archive and restore streams are capped at 4 MB/s, so a 24 MB slide (more than the
    loopback socket buffers hold) is mid-way long enough to kill -9 what carries it: every
    holder mid-archive, then the coordinator mid-archive, then the node receiving the
    restore mid-restore. Nothing is lost and what comes back is the original."""
    archive = tmp_path / "archive"
    cluster = make_cluster(
        nodes=4,
        coordinator_settings={"archive_url": f"file://{archive}", "copy_bytes_per_second": 4e6},
    )
    path = slide(3, tail=24 << 20)
    original = path.read_bytes()
    with cluster.client() as sdk:
        blob_id = sdk.upload(path, wait="all", progress=False)
    holders = cluster.holders(blob_id)

    def archiving_since(moment: float) -> int | None:
        """Bytes of the archived object being written since ``moment`` (None: none is)."""
        for p in archive.iterdir() if archive.exists() else []:
            if p.name.startswith(blob_id) and not p.name.endswith(".json"):
                found = p.stat()
                if found.st_mtime > moment:
                    return found.st_size
        return None

    size = len(original)
    with admin(cluster) as operator:
        # Every holder (the source among them) killed while the archive is being written.
        asked = time.time()
        operator.archive(blob_id)
        eventually(lambda: archiving_since(asked) is not None, timeout=20)
        for node in holders:
            cluster.kill(node)
        assert (archiving_since(asked) or 0) < size  # mid-way
        time.sleep(3.0)  # the coordinator drains what the sockets held, then fails
        assert operator.info(blob_id).status is BlobStatus.UNAVAILABLE  # live, not archived
        # One holder back: the archive starts again from it; the coordinator is killed in
        # its middle.
        back = time.time()
        cluster.restart(holders[0])
        eventually(lambda: archiving_since(back) is not None, timeout=30)
        cluster.kill_coordinator()
        assert (archiving_since(back) or 0) < size  # mid-way
        for node in holders[1:]:
            cluster.restart(node)
        cluster.restart_coordinator()
        view = eventually(
            lambda: (v := operator.info(blob_id)).status is BlobStatus.ARCHIVED and v, timeout=90
        )
        eventually(lambda: not cluster.disk_hashes(blob_id), timeout=30)
        assert view.archive_url is not None and view.archive_encoding is not None
        # The archived object decodes to the original, whatever its encoding.
        stored = archive / view.archive_url.rsplit("/", 1)[1]
        with stored.open("rb") as raw:
            decoded = b"".join(
                archive_codec.decoded(raw, archive_codec.Encoding(view.archive_encoding))
            )
        assert decoded == original

        # The node pulling the restore from the archive killed mid-restore.
        operator.restore(blob_id)
        pulling = eventually(lambda: receiving(cluster), timeout=30)
        for node in pulling:
            cluster.kill(node)
        assert operator.info(blob_id).status is BlobStatus.RESTORING
    restored = cluster.wait_durable(blob_id, R, timeout=120)
    assert restored.status is BlobStatus.OK
    running = {i: h for i, h in cluster.disk_hashes(blob_id).items() if cluster.running(i)}
    assert len(running) >= R and set(running.values()) == {blob_id}
    assert sha256_of(original) == blob_id
    for node in pulling:
        cluster.restart(node)
    cluster.wait_durable(blob_id, R, timeout=60)
    assert set(cluster.disk_hashes(blob_id).values()) == {blob_id}


def test_archived_rows_come_back_from_the_archive_when_the_database_is_lost(
    make_cluster: Callable[..., Cluster], slide: Callable[..., Path], tmp_path: Path
) -> None:
    """A lost database whose nodes remember nothing of an archived blob (their ledgers
    wiped too): the new leader reads the archive's manifests and the blob is archived,
    restorable, again. The archive is a second fsspec backend here: the
    ``simplecache::file://`` chain (``memory://`` would be one archive per process, so the
    nodes could never read what the coordinator wrote)."""
    archive = tmp_path / "archive"
    url = f"simplecache::file://{archive}"
    cluster = make_cluster(nodes=3, coordinator_settings={"archive_url": url})
    path = slide(4)
    with cluster.client() as sdk:
        blob_id = sdk.upload(path, wait="all", progress=False)
    with admin(cluster) as operator:
        operator.archive(blob_id)
        eventually(lambda: operator.info(blob_id).status is BlobStatus.ARCHIVED, timeout=30)
    eventually(lambda: not cluster.disk_hashes(blob_id), timeout=20)
    cluster.kill_coordinator()
    for index in range(len(cluster.nodes)):
        cluster.kill(index)
        for kind in ("tombstones", "policies"):
            entry = cluster.nodes[index].data_dir / "ledger" / kind / blob_id
            if entry.exists():
                os.unlink(entry)
    empty_database(cluster.database_url)
    cluster.restart_coordinator()
    for index in range(len(cluster.nodes)):
        cluster.restart(index)
    cluster.wait_alive(timeout=30)
    with admin(cluster) as operator:
        view = eventually(
            lambda: (
                (v := _info_or_none(operator, blob_id)) is not None
                and v.status is BlobStatus.ARCHIVED
                and v
            ),
            timeout=30,
        )
        assert view.size == path.stat().st_size
        assert view.archive_url is not None and view.archive_url.startswith(url)
        assert (archive / f"{blob_id}.json").exists()
        operator.restore(blob_id)
    cluster.wait_durable(blob_id, R, timeout=60)
    assert set(cluster.disk_hashes(blob_id).values()) == {blob_id}


def _info_or_none(operator: slidestore.Cluster, blob_id: str) -> Any:
    try:
        return operator.info(blob_id)
    except errors.BlobNotFound:
        return None

"""Resumable upload sessions: chunks, offsets, checksums, restarts, completion into blobs."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from slidestore.blobs import BlobStore
from slidestore.errors import (
    ChecksumMismatch,
    InsufficientStorage,
    InvalidRequest,
    UnsupportedFormat,
    UploadConflict,
    UploadExpired,
    UploadNotFound,
    UploadOffsetMismatch,
    UploadQuotaExceeded,
    UploadTooLarge,
)
from slidestore.testing.clock import ManualClock as Clock
from slidestore.testing.paths import shared_data_dir
from slidestore.uploads import ChunkChecksum, UploadManager

DATA = shared_data_dir()
SLIDE = (DATA / "CMU-1-Small-Region.svs").read_bytes()
SLIDE_SHA = hashlib.sha256(SLIDE).hexdigest()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", reserve_bytes=0)


@pytest.fixture
def make(tmp_path: Path, blobs: BlobStore, clock: Clock) -> Callable[..., UploadManager]:
    def make(*, blobs: BlobStore = blobs, **kwargs: object) -> UploadManager:
        options: dict[str, object] = {"expiry_seconds": 3600, "max_size": 1 << 30, "clock": clock}
        options.update(kwargs)
        return UploadManager(tmp_path / "uploads", blobs, **options)  # type: ignore[arg-type]

    return make


@pytest.fixture
def uploads(make: Callable[..., UploadManager]) -> UploadManager:
    return make()


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def upload_whole(uploads: UploadManager, data: bytes, chunk: int = 300_000, **kw: object) -> str:
    info = uploads.create(len(data), **kw)  # type: ignore[arg-type]
    for start in range(0, len(data), chunk):
        info = uploads.append(info.id, start, pieces(data[start : start + chunk], 64_000))
    assert info.blob_id is not None
    return info.blob_id


def test_upload_in_chunks_becomes_a_blob(uploads: UploadManager, blobs: BlobStore) -> None:
    info = uploads.create(len(SLIDE), {"filename": b"CMU-1-Small-Region.svs"}, sha256=SLIDE_SHA)
    assert (info.offset, info.length, info.complete) == (0, len(SLIDE), False)
    assert blobs.space.promised_bytes == len(SLIDE)
    offset = 0
    for chunk in pieces(SLIDE, 500_000):
        info = uploads.append(info.id, offset, [chunk])
        offset += len(chunk)
        assert info.offset == offset
        assert blobs.space.promised_bytes == len(SLIDE) - offset or info.complete
    assert info.complete
    assert info.blob_id == SLIDE_SHA
    assert blobs.path(SLIDE_SHA).read_bytes() == SLIDE
    assert blobs.space.promised_bytes == 0
    # The session record outlives the bytes (so a client can still learn the blob id).
    assert uploads.info(info.id).blob_id == SLIDE_SHA
    assert not uploads.data_path(info.id).exists()
    assert uploads.info(info.id).metadata == {"filename": b"CMU-1-Small-Region.svs"}
    assert uploads.in_flight() == 0
    assert uploads.bytes_received == len(SLIDE)


def test_declared_sha256_may_be_the_raw_digest(uploads: UploadManager) -> None:
    info = uploads.create(len(SLIDE), sha256=bytes.fromhex(SLIDE_SHA))
    assert info.sha256 == SLIDE_SHA
    with pytest.raises(InvalidRequest):
        uploads.create(len(SLIDE), sha256="not-a-digest")


def test_same_content_twice_is_stored_once(uploads: UploadManager, blobs: BlobStore) -> None:
    first = upload_whole(uploads, SLIDE)
    second = upload_whole(uploads, SLIDE, chunk=700_000)
    assert first == second == SLIDE_SHA
    assert list(blobs.ids()) == [SLIDE_SHA]


def test_offset_mismatch_leaves_the_upload_alone(uploads: UploadManager) -> None:
    info = uploads.create(len(SLIDE))
    uploads.append(info.id, 0, [SLIDE[:1000]])
    for wrong in (0, 999, 1001):
        with pytest.raises(UploadOffsetMismatch, match="offset 1000"):
            uploads.append(info.id, wrong, [SLIDE[wrong : wrong + 10]])
    assert uploads.info(info.id).offset == 1000


def test_more_bytes_than_declared_are_refused(uploads: UploadManager) -> None:
    info = uploads.create(100)
    uploads.append(info.id, 0, [b"a" * 60])
    with pytest.raises(UploadTooLarge):
        uploads.append(info.id, 60, [b"b" * 30, b"c" * 30])
    assert uploads.info(info.id).offset == 60
    assert uploads.data_path(info.id).stat().st_size == 60
    with pytest.raises(UploadTooLarge, match="limit"):
        uploads.create((1 << 30) + 1)


def test_concurrent_append_to_the_same_upload_conflicts(uploads: UploadManager) -> None:
    info = uploads.create(len(SLIDE))
    with uploads.open_append(info.id, 0) as first:
        first.write(SLIDE[:100])
        with pytest.raises(UploadConflict):
            uploads.open_append(info.id, 0)
        with pytest.raises(UploadConflict):
            uploads.terminate(info.id)
        first.commit()
    assert uploads.append(info.id, 100, [SLIDE[100:200]]).offset == 200


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_chunk_checksum_mismatch_discards_the_chunk(uploads: UploadManager, algorithm: str) -> None:
    info = uploads.create(len(SLIDE))
    chunk = SLIDE[:5000]
    good = ChunkChecksum(algorithm, hashlib.new(algorithm, chunk).digest())
    bad = ChunkChecksum(algorithm, hashlib.new(algorithm, b"something else").digest())
    with pytest.raises(ChecksumMismatch, match=algorithm):
        uploads.append(info.id, 0, pieces(chunk, 1000), bad)
    assert uploads.info(info.id).offset == 0
    assert uploads.data_path(info.id).stat().st_size == 0
    assert uploads.append(info.id, 0, pieces(chunk, 1000), good).offset == 5000


def test_unsupported_or_malformed_chunk_checksums_are_invalid() -> None:
    with pytest.raises(InvalidRequest, match="not supported"):
        ChunkChecksum("md5", hashlib.md5(b"x").digest())
    with pytest.raises(InvalidRequest, match="20 bytes"):
        ChunkChecksum("sha1", b"short")


def test_a_broken_stream_keeps_what_arrived_unless_a_checksum_was_declared(
    uploads: UploadManager,
) -> None:
    def dropped(data: bytes) -> Iterator[bytes]:
        yield data[:3000]
        yield data[3000:7000]
        raise ConnectionResetError("client went away")

    info = uploads.create(len(SLIDE))
    with pytest.raises(ConnectionResetError):
        uploads.append(info.id, 0, dropped(SLIDE))
    assert uploads.info(info.id).offset == 7000

    checked = ChunkChecksum("sha1", hashlib.sha1(SLIDE[7000:20000]).digest())
    with pytest.raises(ConnectionResetError):
        uploads.append(info.id, 7000, dropped(SLIDE[7000:20000]), checked)
    assert uploads.info(info.id).offset == 7000  # unverifiable bytes are not kept

    info = uploads.append(info.id, 7000, [SLIDE[7000:]])
    assert info.blob_id == SLIDE_SHA


def test_long_chunks_are_checkpointed_while_they_stream(
    make: Callable[..., UploadManager],
) -> None:
    uploads = make(checkpoint_bytes=100_000)
    info = uploads.create(len(SLIDE))
    with uploads.open_append(info.id, 0) as appender:
        for chunk in pieces(SLIDE[:450_000], 50_000):
            appender.write(chunk)
        # Still mid-request, but a restart would already find this much:
        assert make().info(info.id).offset == 400_000
        appender.commit()
    assert uploads.info(info.id).offset == 450_000


def test_state_survives_a_restart_and_the_hash_is_rebuilt_from_disk(
    make: Callable[..., UploadManager], blobs: BlobStore
) -> None:
    before = make()
    info = before.create(len(SLIDE), sha256=SLIDE_SHA)
    before.append(info.id, 0, [SLIDE[:800_000]])
    del before

    # A new process: a fresh free-space ledger and no in-memory hash of the first 800 kB.
    store = BlobStore(blobs.root, reserve_bytes=0)
    after = make(blobs=store)
    assert after.info(info.id).offset == 800_000
    assert store.space.promised_bytes == len(SLIDE) - 800_000  # the promise is re-established
    done = after.append(info.id, 800_000, pieces(SLIDE[800_000:], 100_000))
    assert done.blob_id == SLIDE_SHA
    assert store.path(SLIDE_SHA).read_bytes() == SLIDE
    assert store.space.promised_bytes == 0


def test_bytes_past_the_durable_offset_are_cut_off(uploads: UploadManager) -> None:
    info = uploads.create(len(SLIDE))
    uploads.append(info.id, 0, [SLIDE[:1000]])
    # What a crash between writing a chunk and recording its offset leaves behind:
    with open(uploads.data_path(info.id), "ab") as f:
        f.write(b"garbage never acknowledged")
    assert uploads.info(info.id).offset == 1000
    assert uploads.append(info.id, 1000, [SLIDE[1000:]]).blob_id == SLIDE_SHA


def test_completing_is_idempotent_and_recovers_an_interrupted_completion(
    uploads: UploadManager, make: Callable[..., UploadManager], blobs: BlobStore
) -> None:
    info = uploads.create(len(SLIDE))
    with uploads.open_append(info.id, 0) as appender:
        appender.write(SLIDE)
        appender.abort()  # the bytes are durable, the completing step never ran
    assert uploads.info(info.id).offset == len(SLIDE)
    assert not uploads.info(info.id).complete
    restarted = make()
    assert restarted.finish(info.id).blob_id == SLIDE_SHA
    assert restarted.finish(info.id).blob_id == SLIDE_SHA
    assert blobs.path(SLIDE_SHA).read_bytes() == SLIDE


def test_declared_sha256_mismatch_discards_everything(
    uploads: UploadManager, blobs: BlobStore
) -> None:
    info = uploads.create(len(SLIDE), sha256=hashlib.sha256(b"another file").hexdigest())
    with pytest.raises(ChecksumMismatch, match="declared"):
        uploads.append(info.id, 0, [SLIDE])
    with pytest.raises(UploadNotFound):
        uploads.info(info.id)
    assert list(blobs.ids()) == []
    assert uploads.ids() == []
    assert blobs.space.promised_bytes == 0


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param(
            (DATA / "unopenable.tiff").read_bytes(), "Unsupported TIFF compression", id="unopenable"
        ),
        pytest.param(
            (DATA / "unreadable.svs").read_bytes(), "Bogus marker length", id="unreadable"
        ),
        pytest.param(os.urandom(70_000), "not a slide format", id="random"),
        pytest.param(b"", "not a slide format", id="empty"),
    ],
)
def test_files_that_are_not_readable_slides_are_refused(
    uploads: UploadManager, blobs: BlobStore, content: bytes, reason: str
) -> None:
    with pytest.raises(UnsupportedFormat, match=reason) as caught:
        upload_whole(uploads, content)
    assert str(uploads.root) not in str(caught.value)  # no server paths in client messages
    assert uploads.ids() == []
    assert list(blobs.ids()) == []
    assert blobs.space.promised_bytes == 0


@pytest.mark.parametrize("name", ["small.svs", "boxes.tiff"])
def test_any_slide_openslide_reads_is_accepted(uploads: UploadManager, name: str) -> None:
    # boxes.tiff is a generic tiled TIFF: accepted, because it opens and decodes as a slide.
    data = (DATA / name).read_bytes()
    assert upload_whole(uploads, data) == hashlib.sha256(data).hexdigest()


def test_custom_validation_can_replace_the_slide_check(
    make: Callable[..., UploadManager], blobs: BlobStore
) -> None:
    uploads = make(validate=None)
    assert upload_whole(uploads, b"any bytes at all") in set(blobs.ids())


def test_terminate_removes_the_upload_and_its_promise(
    uploads: UploadManager, blobs: BlobStore
) -> None:
    info = uploads.create(len(SLIDE))
    uploads.append(info.id, 0, [SLIDE[:1000]])
    uploads.terminate(info.id)
    with pytest.raises(UploadNotFound):
        uploads.info(info.id)
    with pytest.raises(UploadNotFound):
        uploads.terminate(info.id)
    assert blobs.space.promised_bytes == 0
    assert uploads.ids() == []


def test_untouched_uploads_expire(uploads: UploadManager, blobs: BlobStore, clock: Clock) -> None:
    active = uploads.create(len(SLIDE))
    abandoned = uploads.create(len(SLIDE))
    uploads.append(abandoned.id, 0, [SLIDE[:10]])
    clock.now += 3000
    uploads.append(active.id, 0, [SLIDE[:10]])  # activity pushes its expiry back
    assert uploads.expire() == []
    clock.now += 601
    assert uploads.expire() == [abandoned.id]
    assert uploads.ids() == [active.id]
    clock.now += 3000
    with pytest.raises(UploadExpired):
        uploads.info(active.id)
    assert uploads.ids() == []
    assert blobs.space.promised_bytes == 0


def test_creation_is_refused_when_the_disk_cannot_take_the_declared_length(
    tmp_path: Path, blobs: BlobStore
) -> None:
    tight = BlobStore(tmp_path / "tight", reserve_bytes=blobs.space.free_bytes() - 10_000_000)
    uploads = UploadManager(tmp_path / "up", tight, expiry_seconds=60, max_size=1 << 40)
    with pytest.raises(InsufficientStorage):
        uploads.create(1 << 30)
    assert uploads.ids() == []
    assert tight.space.promised_bytes == 0


@pytest.mark.parametrize("bad", ["../blobs", "short", "a/b" * 10, ""])
def test_malformed_upload_ids_are_not_found(uploads: UploadManager, bad: str) -> None:
    with pytest.raises(UploadNotFound):
        uploads.info(bad)
    with pytest.raises(UploadNotFound):
        uploads.open_append(bad, 0)


def test_an_owner_holds_a_bounded_number_of_open_sessions(
    make: Callable[..., UploadManager], clock: Clock
) -> None:
    uploads = make(max_sessions_per_owner=2, idle_expiry_seconds=300)
    first = uploads.create(1000, owner="alice")
    uploads.create(1000, owner="alice")
    with pytest.raises(UploadQuotaExceeded):
        uploads.create(1000, owner="alice")
    with pytest.raises(PermissionError):  # the builtin a caller would catch
        uploads.create(1000, owner="alice")
    uploads.create(1000, owner="bob")  # another token's quota is its own
    uploads.create(1000)  # an operator (no owner) is not counted
    # A completed upload no longer counts; a terminated one neither.
    uploads.terminate(first.id, owner="alice")
    third = uploads.create(len(SLIDE), owner="alice")
    uploads.append(third.id, 0, [SLIDE])
    uploads.create(1000, owner="alice")
    with pytest.raises(UploadQuotaExceeded):
        uploads.create(1000, owner="alice")
    # Sessions nobody writes to expire after minutes, and then stop counting.
    clock.now += 301
    uploads.create(1000, owner="alice")
    uploads.create(1000, owner="alice")
    with pytest.raises(UploadQuotaExceeded):
        uploads.create(1000, owner="alice")


def test_an_owner_holds_no_more_bytes_than_it_was_granted(
    make: Callable[..., UploadManager],
) -> None:
    uploads = make()
    uploads.create(3000, owner="carol", owner_bytes=5000)
    with pytest.raises(UploadQuotaExceeded):
        uploads.create(3000, owner="carol", owner_bytes=5000)
    uploads.create(2000, owner="carol", owner_bytes=5000)
    with pytest.raises(UploadQuotaExceeded):
        uploads.create(1, owner="carol", owner_bytes=5000)
    assert [info.owner for info in map(uploads.info, uploads.ids())] == ["carol", "carol"]

"""tus concatenation in the upload manager: partial uploads in parallel, then a final
upload made of them, which completes (hash, validation, blob) like any upload."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from slidestore.blobs import BlobStore
from slidestore.blobs.sums import ChunkSummer
from slidestore.errors import (
    ChecksumMismatch,
    Forbidden,
    GrantUsed,
    InvalidRequest,
    UnsupportedFormat,
    UploadConflict,
    UploadNotFound,
    UploadQuotaExceeded,
)
from slidestore.testing.clock import ManualClock as Clock
from slidestore.testing.paths import shared_data_dir
from slidestore.uploads import UploadManager
from slidestore.uploads.concat import parse_final

SLIDE = (shared_data_dir() / "CMU-1-Small-Region.svs").read_bytes()
SLIDE_SHA = hashlib.sha256(SLIDE).hexdigest()


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", reserve_bytes=0)


def manager(tmp_path: Path, blobs: BlobStore, **kwargs: object) -> UploadManager:
    options: dict[str, object] = {"expiry_seconds": 3600, "max_size": 1 << 30, "clock": Clock()}
    options.update(kwargs)
    return UploadManager(tmp_path / "uploads", blobs, **options)  # type: ignore[arg-type]


@pytest.fixture
def uploads(tmp_path: Path, blobs: BlobStore) -> UploadManager:
    return manager(tmp_path, blobs)


def expected_sums() -> object:
    summer = ChunkSummer()
    summer.update(SLIDE)
    return summer.finish()


def split(data: bytes, n: int) -> list[bytes]:
    step = -(-len(data) // n)
    return [data[i : i + step] for i in range(0, len(data), step)]


def write(uploads: UploadManager, upload_id: str, data: bytes, owner: str | None = None) -> object:
    with uploads.open_append(upload_id, 0, owner=owner) as appender:
        appender.write(data)
        return appender.commit()


def send_parts(uploads: UploadManager, pieces: list[bytes], **kw: object) -> list[str]:
    ids = []
    for piece in pieces:
        info = uploads.create(len(piece), partial=True, **kw)  # type: ignore[arg-type]
        info = write(uploads, info.id, piece, kw.get("owner"))  # type: ignore[arg-type,assignment]
        assert info.offset == info.length and info.blob_id is None  # a part is never a blob
        ids.append(info.id)
    return ids


def test_partial_uploads_concatenate_into_the_blob(
    uploads: UploadManager, blobs: BlobStore
) -> None:
    parts = send_parts(uploads, split(SLIDE, 4))
    final = uploads.concatenate(parts, {"filename": b"x.svs"}, SLIDE_SHA)
    assert final.blob_id == SLIDE_SHA and final.length == len(SLIDE)
    assert final.concat == "final" and final.parts == tuple(parts)
    assert blobs.path(SLIDE_SHA).read_bytes() == SLIDE
    assert blobs.sums(SLIDE_SHA) == expected_sums()  # computed on the way, not read back
    for part in parts:  # consumed
        with pytest.raises(UploadNotFound):
            uploads.info(part)


def test_parts_hashed_in_another_process_are_read_back(tmp_path: Path, blobs: BlobStore) -> None:
    first = manager(tmp_path, blobs)
    parts = send_parts(first, split(SLIDE, 3))
    again = manager(tmp_path, blobs)  # a restart: no hash of any part in memory
    assert again.concatenate(parts, sha256=SLIDE_SHA).blob_id == SLIDE_SHA
    assert blobs.sums(SLIDE_SHA) == expected_sums()


def test_order_matters_and_a_wrong_order_is_caught_by_the_declared_sha256(
    uploads: UploadManager, blobs: BlobStore
) -> None:
    parts = send_parts(uploads, split(SLIDE, 2))
    with pytest.raises(ChecksumMismatch):
        uploads.concatenate(list(reversed(parts)), sha256=SLIDE_SHA)
    assert not blobs.exists(SLIDE_SHA)


def test_a_final_that_is_not_a_slide_is_refused_and_nothing_kept(
    uploads: UploadManager, blobs: BlobStore
) -> None:
    parts = send_parts(uploads, [b"not a", b" slide at all"])
    with pytest.raises(UnsupportedFormat):
        uploads.concatenate(parts)
    assert uploads.ids() == []


def test_incomplete_missing_repeated_or_non_partial_parts_are_refused(
    uploads: UploadManager,
) -> None:
    half = split(SLIDE, 2)
    done = send_parts(uploads, half[:1])
    open_part = uploads.create(len(half[1]), partial=True)
    uploads.append(open_part.id, 0, [half[1][:100]])
    with pytest.raises(InvalidRequest, match="has 100 of"):
        uploads.concatenate([*done, open_part.id])
    with pytest.raises(InvalidRequest, match="distinct"):
        uploads.concatenate([*done, *done])
    with pytest.raises(InvalidRequest, match="distinct"):
        uploads.concatenate([])
    plain = uploads.create(10)
    with pytest.raises(InvalidRequest, match="not a partial"):
        uploads.concatenate([*done, plain.id])
    with pytest.raises(UploadNotFound):
        uploads.concatenate([*done, "A" * 24])
    # Nothing was consumed by the refusals.
    assert uploads.info(done[0]).offset == len(half[0])


def test_a_final_upload_takes_no_bytes_of_its_own(uploads: UploadManager) -> None:
    parts = send_parts(uploads, split(SLIDE, 2))
    final = uploads.concatenate(parts, sha256=SLIDE_SHA)
    with pytest.raises(Forbidden):
        uploads.append(final.id, final.length, [b"x"])


def test_another_owners_parts_do_not_exist(uploads: UploadManager) -> None:
    parts = send_parts(uploads, split(SLIDE, 2), owner="alice-nonce-0001")
    with pytest.raises(UploadNotFound):
        uploads.concatenate(parts, owner="mallory-nonce-01")
    assert uploads.concatenate(parts, owner="alice-nonce-0001").blob_id == SLIDE_SHA


def test_a_part_being_written_cannot_be_concatenated(uploads: UploadManager) -> None:
    parts = send_parts(uploads, split(SLIDE, 2))
    fd = uploads._lock(parts[1])  # another request holds it
    try:
        with pytest.raises(UploadConflict):
            uploads.concatenate(parts)
    finally:
        import os

        os.close(fd)
    assert uploads.concatenate(parts).blob_id == SLIDE_SHA


def test_a_grant_bounds_its_parts_and_is_spent_by_the_final(uploads: UploadManager) -> None:
    grant = {"owner": "grant-nonce-00001", "owner_bytes": len(SLIDE)}
    until = time.time() + 600
    pieces = split(SLIDE, 2)
    # Parts together may not exceed the grant's size...
    first = uploads.create(len(pieces[0]), partial=True, single_use_until=until, **grant)
    with pytest.raises(UploadQuotaExceeded):
        uploads.create(len(SLIDE), partial=True, single_use_until=until, **grant)
    write(uploads, first.id, pieces[0], str(grant["owner"]))
    second = uploads.create(len(pieces[1]), partial=True, single_use_until=until, **grant)
    write(uploads, second.id, pieces[1], str(grant["owner"]))
    final = uploads.concatenate(
        [first.id, second.id], sha256=SLIDE_SHA, owner=grant["owner"], single_use_until=until
    )
    assert final.blob_id == SLIDE_SHA
    # ...and once the final used the grant, it makes nothing more.
    with pytest.raises(GrantUsed):
        uploads.create(10, partial=True, single_use_until=until, **grant)
    with pytest.raises(GrantUsed):
        uploads.create(len(SLIDE), single_use_until=until, **grant)


def test_an_interrupted_final_is_resumed_by_asking_again(uploads: UploadManager) -> None:
    parts = send_parts(uploads, split(SLIDE, 3), owner="resume-nonce-001")
    until = time.time() + 600
    # The final's session exists (grant used) but the copy never ran: a crash.
    stalled = uploads._final_session(
        tuple(parts), len(SLIDE), None, SLIDE_SHA, "resume-nonce-001", until
    )
    assert stalled.offset == 0
    final = uploads.concatenate(
        parts, sha256=SLIDE_SHA, owner="resume-nonce-001", single_use_until=until
    )
    assert final.id == stalled.id and final.blob_id == SLIDE_SHA
    # The answer was lost: asking again names the same blob (the parts are gone by now).
    assert uploads.part_lengths(parts, "resume-nonce-001") == [len(SLIDE)]
    again = uploads.concatenate(
        parts, sha256=SLIDE_SHA, owner="resume-nonce-001", single_use_until=until
    )
    assert again.id == final.id and again.blob_id == SLIDE_SHA


def test_parse_final_header() -> None:
    assert parse_final("final;/uploads/abc http://n:1/uploads/def/") == ["abc", "def"]
    for bad in ("partial", "final;", "final", "final;/uploads/a /uploads/a"):
        with pytest.raises(ValueError, match="final"):
            parse_final(bad)

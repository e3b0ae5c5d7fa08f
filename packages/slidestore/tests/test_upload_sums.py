"""An upload's chunk checksums are computed as its bytes arrive, across chunks, processes
and restarts, and completing the upload reads nothing back to compute them."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from slidestore.blobs import BlobStore
from slidestore.blobs import store as store_module
from slidestore.blobs.sums import CHUNK, ChunkSummer, ChunkSums
from slidestore.errors import ChecksumMismatch
from slidestore.testing.paths import shared_data_dir
from slidestore.uploads import ChunkChecksum, UploadManager
from slidestore.uploads.sums import SUMS_FILE

SLIDE = (shared_data_dir() / "CMU-1-Small-Region.svs").read_bytes()


def reference(data: bytes) -> ChunkSums:
    summer = ChunkSummer()
    summer.update(data)
    return summer.finish()


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", reserve_bytes=0)


@pytest.fixture
def make(tmp_path: Path, blobs: BlobStore) -> Callable[[], UploadManager]:
    """A new manager on the same directories: what a restarted node (or another worker
    process, which never saw this one's chunks) finds."""

    def make() -> UploadManager:
        return UploadManager(
            tmp_path / "uploads", blobs, expiry_seconds=3600, max_size=1 << 30, validate=None
        )

    return make


@pytest.fixture
def no_read_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Completing must not read the file again to sum it."""

    def refuse(path: Path, summer: ChunkSummer) -> None:
        raise AssertionError(f"{path} was read back to compute its chunk checksums")

    monkeypatch.setattr(store_module, "_sum_file", refuse)


def sidecar(blobs: BlobStore, blob_id: str) -> ChunkSums:
    sums = ChunkSums.load(blobs.sums_path(blob_id))
    assert sums is not None
    return sums


@pytest.mark.usefixtures("no_read_back")
def test_sums_are_computed_while_the_chunks_arrive(
    make: Callable[[], UploadManager], blobs: BlobStore
) -> None:
    uploads = make()
    info = uploads.create(len(SLIDE))
    # Chunks that end anywhere in a checksum chunk, fed in pieces that do too.
    offset = 0
    for size in (1, CHUNK - 1, 3 * CHUNK + 5, 100_003, len(SLIDE)):
        end = min(len(SLIDE), offset + size)
        piece = SLIDE[offset:end]
        info = uploads.append(info.id, offset, [piece[:7], piece[7:9000], piece[9000:]])
        offset = end
        if offset == len(SLIDE):
            break
    assert info.blob_id == hashlib.sha256(SLIDE).hexdigest()
    assert sidecar(blobs, info.blob_id) == reference(SLIDE)


@pytest.mark.usefixtures("no_read_back")
def test_a_refused_chunk_is_taken_back_from_the_sums(
    make: Callable[[], UploadManager], blobs: BlobStore
) -> None:
    uploads = make()
    info = uploads.create(len(SLIDE))
    half = 5 * CHUNK + 123
    info = uploads.append(info.id, 0, [SLIDE[:half]])
    wrong = ChunkChecksum("sha256", hashlib.sha256(b"something else").digest())
    with pytest.raises(ChecksumMismatch):
        uploads.append(info.id, half, [b"\xff" * (3 * CHUNK)], checksum=wrong)
    info = uploads.append(info.id, half, [SLIDE[half:]])
    assert info.blob_id is not None
    assert sidecar(blobs, info.blob_id) == reference(SLIDE)


@pytest.mark.parametrize("damage", ["none", "stale entries past the offset", "sums lost"])
def test_sums_survive_a_restart_between_chunks(
    make: Callable[[], UploadManager], blobs: BlobStore, tmp_path: Path, damage: str
) -> None:
    first = make()
    info = first.create(len(SLIDE))
    cut = 7 * CHUNK + 4321  # mid-chunk
    info = first.append(info.id, 0, [SLIDE[:cut]])
    sums_path = tmp_path / "uploads" / info.id / SUMS_FILE
    assert sums_path.stat().st_size == 7 * 4  # the complete chunks' CRCs, durable
    if damage == "stale entries past the offset":
        # A crash after the next chunk's CRCs were written but before its offset was.
        with open(sums_path, "ab") as f:
            f.write(b"\xde\xad\xbe\xef" * 50)
    elif damage == "sums lost":
        sums_path.unlink()
    # "Restart": a new manager, nothing in memory; it resumes from disk.
    info = make().append(info.id, cut, [SLIDE[cut:]])
    assert info.blob_id is not None
    assert sidecar(blobs, info.blob_id) == reference(SLIDE)
    fd = os.open(blobs.path(info.blob_id), os.O_RDONLY)
    try:
        assert blobs.read_checked(info.blob_id, fd, 0, len(SLIDE)) == SLIDE
    finally:
        os.close(fd)


def test_completing_after_a_restart_uses_the_recorded_sums(
    make: Callable[[], UploadManager], blobs: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last chunk's bytes were durable when the node died, before completion: a
    restarted node completes it (``finish``) with the sums from disk."""
    first = make()
    info = first.create(len(SLIDE))
    info = first.append(info.id, 0, [SLIDE[:-10]])
    appender = first.open_append(info.id, info.offset)
    appender.write(SLIDE[-10:])
    appender._persist()  # durable, then the process "dies" before completing
    appender._close()
    monkeypatch.setattr(store_module, "_sum_file", None)  # any read back would fail
    done = make().finish(info.id)
    assert done.blob_id is not None
    assert sidecar(blobs, done.blob_id) == reference(SLIDE)

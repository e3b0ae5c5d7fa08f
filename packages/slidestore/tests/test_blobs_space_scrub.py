"""The blob store's free-space guard, readiness and scrubbing."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

from slidestore.blobs import BlobStore, free_bytes
from slidestore.errors import InsufficientStorage

MB = 1 << 20


class Disk:
    """A disk of a fixed size for the guard's arithmetic: free = size − what the store holds.

    Real free space moves with everything else on this machine, so the exact boundary
    cases use this; one test below runs against the real filesystem with wide margins.
    """

    def __init__(self, size: int):
        self.size = size
        self.used = 0

    def __call__(self, path: Path) -> int:
        return self.size - self.used


def test_reservation_refused_before_any_byte_when_it_would_eat_the_reserve(tmp_path: Path) -> None:
    disk = Disk(100 * MB)
    store = BlobStore(tmp_path / "blobs", reserve_bytes=10 * MB, free=disk)
    assert store.stats().available_bytes == 90 * MB
    target = tmp_path / "upload.part"
    upload = store.reserve(60 * MB, written=target)
    assert store.space.promised_bytes == 60 * MB
    with pytest.raises(InsufficientStorage, match="reserve"):
        store.reserve(31 * MB)  # 90 − 60 = 30 available
    store.reserve(30 * MB).release()
    # Bytes landing in the reservation's file shrink both free space and the promise:
    # still 30 MB available.
    target.write_bytes(b"x" * (20 * MB))
    disk.used += 20 * MB
    assert upload.remaining == 40 * MB
    assert store.stats().available_bytes == 30 * MB
    upload.release()
    upload.release()  # twice is harmless
    assert store.space.promised_bytes == 0
    assert store.stats().available_bytes == 70 * MB


def test_writer_with_a_size_is_refused_before_writing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", reserve_bytes=10 * MB, free=Disk(20 * MB))
    with pytest.raises(InsufficientStorage):
        store.writer(size=11 * MB)
    assert list(store.temp_dir.iterdir()) == []
    assert store.space.promised_bytes == 0
    with store.writer(size=MB) as writer:
        assert store.space.promised_bytes == MB
        writer.write(b"x" * MB)
        writer.commit()
    assert store.space.promised_bytes == 0


def test_writer_without_a_size_stops_at_the_reserve(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", reserve_bytes=10 * MB, free=Disk(11 * MB))
    with store.writer() as writer:
        writer.write(b"x" * MB)
        with pytest.raises(InsufficientStorage):
            writer.write(b"x" * (MB + 1))
    assert list(store.ids()) == []


def test_guard_against_the_real_filesystem(tmp_path: Path) -> None:
    free = free_bytes(tmp_path)
    # Leave 1 GiB of headroom so other processes on this machine cannot flip the result.
    store = BlobStore(tmp_path / "blobs", reserve_bytes=free - (1 << 30))
    with pytest.raises(InsufficientStorage):
        store.reserve(2 << 30)
    with store.reserve(256 * MB), pytest.raises(InsufficientStorage):
        store.reserve(1 << 30)  # fits the free space, not free space minus the promise
    assert store.readiness_problems() == []
    huge = BlobStore(tmp_path / "blobs2", reserve_bytes=free + (1 << 40))
    problems = huge.readiness_problems()
    assert len(problems) == 1
    assert "reserve" in problems[0]


def test_readiness_reports_an_unwritable_data_directory(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", reserve_bytes=0)
    # Permissions do not stop root, so make the temp dir unusable another way.
    shutil.rmtree(store.temp_dir)
    store.temp_dir.write_bytes(b"not a directory")
    problems = store.readiness_problems()
    assert len(problems) == 1
    assert "not writable" in problems[0]


def corrupt(store: BlobStore, blob_id: str, at: int) -> bytes:
    path = store.path(blob_id)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    return bytes(data)


def test_scrub_quarantines_blobs_whose_content_changed(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", reserve_bytes=0)
    ids = [store.put(os.urandom(200_000)) for _ in range(4)]
    bad = ids[2]
    damaged = corrupt(store, bad, at=123_456)
    assert list(store.scrub()) == [bad]
    assert not store.exists(bad)
    assert sorted(store.ids()) == sorted(set(ids) - {bad})
    # Moved aside, not deleted: the damaged bytes are kept for inspection.
    (moved,) = store.quarantined()
    assert moved.name.startswith(bad)
    assert moved.read_bytes() == damaged
    assert list(store.scrub()) == []


def test_scrub_of_selected_ids_is_lazy_and_skips_vanished_blobs(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", reserve_bytes=0)
    good, bad = store.put(b"good"), store.put(b"bad")
    corrupt(store, bad, at=0)
    results = store.scrub([good, bad])
    assert store.exists(bad)  # nothing happens before iteration
    gone = hashlib.sha256(b"deleted meanwhile").hexdigest()
    assert list(store.scrub([gone])) == []
    assert list(results) == [bad]
    assert store.exists(good)


def test_scrub_is_paced_by_bytes_per_second(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", reserve_bytes=0)
    for _ in range(3):
        store.put(os.urandom(MB))
    start = time.monotonic()
    assert list(store.scrub(bytes_per_second=6 * MB)) == []
    assert time.monotonic() - start >= 0.45  # 3 MB at 6 MB/s

"""Per-chunk checksums: computed as a blob is written (or once for an older blob), checked
on every read; a copy that fails is quarantined and reported, never returned."""

from __future__ import annotations

import contextlib
import os
import random
import threading
import zlib
from pathlib import Path

import pytest

from slidestore.blobs import BlobStore
from slidestore.blobs.sums import CHUNK, ChunkSummer, ChunkSums
from slidestore.errors import ReplicaCorrupt


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", reserve_bytes=0)


def _data(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def _corrupt(path: Path, *, flip_at: int | None = None, truncate_to: int | None = None) -> None:
    os.chmod(path, 0o644)
    if truncate_to is not None:
        os.truncate(path, truncate_to)
    if flip_at is not None:
        with open(path, "r+b") as f:
            f.seek(flip_at)
            byte = f.read(1)
            f.seek(flip_at)
            f.write(bytes([byte[0] ^ 0x01]))


def test_sums_do_not_depend_on_how_the_bytes_were_split() -> None:
    data = _data(3 * CHUNK + 123)
    whole, pieces = ChunkSummer(), ChunkSummer()
    whole.update(data)
    rng = random.Random(7)
    at = 0
    while at < len(data):
        step = rng.choice((1, 17, CHUNK - 1, CHUNK, CHUNK + 5))
        pieces.update(data[at : at + step])
        at += step
    sums = whole.finish()
    assert sums == pieces.finish()
    assert len(sums.crcs) == 4
    # The CRC is the standard CRC-32 (zlib's), whatever computes it.
    assert int(sums.crcs[3]) == zlib.crc32(data[3 * CHUNK :])


def test_a_written_blob_has_a_sidecar_and_reads_check_it(store: BlobStore) -> None:
    data = _data(2 * CHUNK + 999)
    blob_id = store.put(data)
    assert store.sums_path(blob_id).exists()
    with store.open_range(blob_id, 10, CHUNK + 20) as part:
        assert b"".join(part) == data[10 : CHUNK + 20]

    reported: list[str] = []
    store.on_quarantine = reported.append
    _corrupt(store.path(blob_id), flip_at=CHUNK + 5)
    # A range that does not touch the bad chunk is still served...
    with store.open_range(blob_id, 0, 100) as head:
        assert b"".join(head) == data[:100]
    # ...one that does is refused, and the copy is moved aside and reported.
    with pytest.raises(ReplicaCorrupt), store.open_range(blob_id, CHUNK, CHUNK + 10) as bad:
        bad.read()
    assert reported == [blob_id]
    assert not store.exists(blob_id)
    assert not store.sums_path(blob_id).exists()
    assert [p.name.split(".")[0] for p in store.quarantined()] == [blob_id]


def test_a_truncated_copy_fails_on_open_before_any_byte(store: BlobStore) -> None:
    data = _data(CHUNK * 3)
    blob_id = store.put(data)
    store.sums(blob_id)  # cached in memory: the size check must still see the file
    _corrupt(store.path(blob_id), truncate_to=len(data) // 2)
    with pytest.raises(ReplicaCorrupt, match="holds"):
        store.open_range(blob_id)
    assert not store.exists(blob_id)


def test_a_blob_stored_before_sidecars_gets_one_only_if_it_hashes_to_its_id(
    store: BlobStore,
) -> None:
    good, bad = _data(CHUNK + 1, seed=2), _data(CHUNK + 1, seed=3)
    good_id, bad_id = store.put(good), store.put(bad)
    for blob_id in (good_id, bad_id):
        store.sums_path(blob_id).unlink()
    fresh = BlobStore(store.root, reserve_bytes=0)  # a restart: nothing cached
    _corrupt(fresh.path(bad_id), flip_at=3)

    with fresh.open_range(good_id) as whole:
        assert b"".join(whole) == good
    assert fresh.sums_path(good_id).exists()
    with pytest.raises(ReplicaCorrupt, match="hashes to"):
        fresh.open_range(bad_id)
    assert not fresh.exists(bad_id)
    assert not fresh.sums_path(bad_id).exists()


def test_scrub_rewrites_a_missing_or_damaged_sidecar_from_verified_bytes(
    store: BlobStore,
) -> None:
    data = _data(CHUNK * 2 + 7, seed=4)
    blob_id = store.put(data)
    expected = ChunkSums.load(store.sums_path(blob_id))
    os.chmod(store.sums_path(blob_id), 0o600)
    store.sums_path(blob_id).write_bytes(b"garbage")
    assert list(store.scrub()) == []
    assert ChunkSums.load(store.sums_path(blob_id)) == expected


def test_adopted_files_get_sums_too(store: BlobStore, tmp_path: Path) -> None:
    import hashlib

    data = _data(CHUNK + 77, seed=5)
    source = tmp_path / "upload.bin"
    source.write_bytes(data)
    blob_id = store.adopt(source, hashlib.sha256(data).hexdigest())
    sums = ChunkSums.load(store.sums_path(blob_id))
    assert sums is not None and sums.size == len(data)
    with store.open_range(blob_id) as whole:
        assert b"".join(whole) == data


def test_a_sidecar_written_by_two_threads_at_once_never_fails(tmp_path: Path) -> None:
    """A scrub pass and a read that lost its cached sums may rewrite one sidecar at the
    same moment; with one temp name per process the second rename found no file."""
    from concurrent.futures import ThreadPoolExecutor

    summer = ChunkSummer()
    summer.update(_data(2 * CHUNK + 7))
    sums = summer.finish()
    path = tmp_path / "blob.sums"
    barrier = threading.Barrier(4)

    def write_many() -> None:
        barrier.wait()
        for _ in range(200):
            sums.dump(path)

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(write_many) for _ in range(4)]:
            future.result()  # raises what a thread raised
    assert ChunkSums.load(path) == sums
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob.sums"]  # no temp left


def test_a_sidecar_deleted_while_it_is_read_reads_as_missing(tmp_path: Path) -> None:
    summer = ChunkSummer()
    summer.update(_data(CHUNK + 1))
    sums = summer.finish()
    path = tmp_path / "blob.sums"
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            sums.dump(path)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        seen = [ChunkSums.load(path) for _ in range(2000)]
    finally:
        stop.set()
        thread.join()
    assert all(found is None or found == sums for found in seen)

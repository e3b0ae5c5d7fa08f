"""The content-addressed blob store: ids, atomic streaming writes, ranges, deletes."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import itertools
import os
import stat
import time
from pathlib import Path

import pytest

from slidestore.blobs import BlobStore, fanout
from slidestore.blobs.direct import STAGE_BYTES
from slidestore.blobs.durable import start_writeback
from slidestore.errors import (
    BlobNotFound,
    ChecksumMismatch,
    InvalidBlobId,
    RangeNotSatisfiable,
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", reserve_bytes=0)


def temp_files(store: BlobStore) -> list[Path]:
    return sorted(store.temp_dir.iterdir())


def test_put_stores_under_sha256_in_fanout_dirs(store: BlobStore) -> None:
    data = b"whole slide image bytes" * 1000
    blob_id = store.put(data)
    assert blob_id == sha(data)
    path = store.path(blob_id)
    assert path == store.root / blob_id[:2] / blob_id[2:4] / blob_id
    assert path.relative_to(store.root) == Path(fanout(blob_id))
    assert path.read_bytes() == data
    assert store.exists(blob_id)
    assert store.size(blob_id) == len(data)
    # Stored blobs are immutable on disk too.
    assert stat.S_IMODE(path.stat().st_mode) == 0o400  # read-only, the node's user's
    assert temp_files(store) == []


def test_streaming_writer_is_invisible_until_commit(store: BlobStore) -> None:
    chunks = [os.urandom(100_000) for _ in range(5)]
    blob_id = sha(b"".join(chunks))
    with store.writer(size=500_000) as writer:
        for chunk in chunks:
            writer.write(chunk)
            assert not store.exists(blob_id)
            assert list(store.ids()) == []
        assert len(temp_files(store)) == 1
        assert writer.commit() == blob_id
    assert list(store.ids()) == [blob_id]
    assert store.path(blob_id).read_bytes() == b"".join(chunks)
    assert temp_files(store) == []


def test_abandoned_writer_leaves_nothing(store: BlobStore) -> None:
    def interrupted() -> None:
        with store.writer() as writer:
            writer.write(b"half of a slide")
            raise ConnectionResetError("connection lost")

    with pytest.raises(ConnectionResetError):
        interrupted()
    assert list(store.ids()) == []
    assert temp_files(store) == []
    assert store.space.promised_bytes == 0


def test_commit_refuses_content_that_does_not_match_the_expected_hash(store: BlobStore) -> None:
    with store.writer() as writer:
        writer.write(b"actual bytes")
        with pytest.raises(ChecksumMismatch, match="expected"):
            writer.commit(sha(b"other bytes"))
    assert list(store.ids()) == []
    assert temp_files(store) == []


def test_same_content_twice_is_stored_once(store: BlobStore) -> None:
    data = os.urandom(50_000)
    first = store.put(data)
    inode = store.path(first).stat().st_ino
    second = store.put(data)
    assert first == second
    assert list(store.ids()) == [first]
    assert store.path(first).stat().st_ino == inode  # the first copy was kept as is
    assert store.stats().count == 1
    assert temp_files(store) == []


@pytest.mark.parametrize(
    "bad",
    [
        "../../etc/passwd",
        "ABCDEF" + "0" * 58,  # uppercase is not the canonical form
        "0" * 63,
        "0" * 65,
        "g" * 64,
        "",
    ],
)
def test_invalid_ids_are_refused_everywhere(store: BlobStore, bad: str) -> None:
    for call in (store.path, store.exists, store.size, store.delete, store.open_range):
        with pytest.raises(InvalidBlobId):
            call(bad)


def test_absent_blob_is_not_found(store: BlobStore) -> None:
    missing = sha(b"never stored")
    assert not store.exists(missing)
    for call in (store.path, store.size, store.delete, store.open_range):
        with pytest.raises(BlobNotFound):
            call(missing)


def test_open_range_reads_in_bounded_chunks(store: BlobStore) -> None:
    data = os.urandom(3 * (1 << 20) + 17)
    blob_id = store.put(data)
    with store.open_range(blob_id) as whole:
        chunks = list(whole)
    assert b"".join(chunks) == data
    assert max(len(c) for c in chunks) <= 1 << 20
    with store.open_range(blob_id, 1000, 2000) as part:
        assert (part.length, part.size) == (1000, len(data))
        assert part.read(300) + part.read() == data[1000:2000]
        assert part.read() == b""
    with store.open_range(blob_id, len(data), len(data)) as empty:
        assert empty.read() == b""
    for start, end in [(-1, 10), (10, 5), (0, len(data) + 1), (len(data) + 1, None)]:
        with pytest.raises(RangeNotSatisfiable):
            store.open_range(blob_id, start, end)


def test_a_blob_deleted_while_being_read_is_still_read_to_the_end(store: BlobStore) -> None:
    data = os.urandom(2 << 20)
    blob_id = store.put(data)
    with store.open_range(blob_id) as reader:
        first = reader.read()
        store.delete(blob_id)
        assert not store.exists(blob_id)
        assert first + reader.read() == data


def test_delete_and_ids_and_stats(store: BlobStore) -> None:
    blobs = {store.put(os.urandom(n)): n for n in (10, 2000, 30_000)}
    assert list(store.ids()) == sorted(blobs)
    stats = store.stats()
    assert (stats.count, stats.bytes_stored) == (3, sum(blobs.values()))
    assert stats.free_bytes > 0
    assert stats.available_bytes == stats.free_bytes - stats.reserve_bytes - stats.promised_bytes
    victim = min(blobs)
    store.delete(victim)
    assert not store.exists(victim)
    assert list(store.ids()) == sorted(set(blobs) - {victim})
    with pytest.raises(BlobNotFound):
        store.delete(victim)


def test_adopt_moves_a_finished_file_into_the_store(tmp_path: Path, store: BlobStore) -> None:
    data = os.urandom(10_000)
    source = tmp_path / "upload.bin"
    source.write_bytes(data)
    inode = source.stat().st_ino
    blob_id = store.adopt(source, sha(data))
    assert not source.exists()
    assert store.path(blob_id).stat().st_ino == inode  # linked, not copied
    assert store.path(blob_id).read_bytes() == data

    again = tmp_path / "again.bin"
    again.write_bytes(data)
    assert store.adopt(again, sha(data)) == blob_id
    assert not again.exists()
    assert store.stats().count == 1


def test_adopt_with_verify_refuses_a_wrong_hash_and_leaves_the_file(
    tmp_path: Path, store: BlobStore
) -> None:
    source = tmp_path / "upload.bin"
    source.write_bytes(b"these bytes")
    with pytest.raises(ChecksumMismatch):
        store.adopt(source, sha(b"other bytes"), verify=True)
    assert source.read_bytes() == b"these bytes"
    assert list(store.ids()) == []


def test_put_file_copies_and_checks(tmp_path: Path, store: BlobStore) -> None:
    source = tmp_path / "slide.svs"
    source.write_bytes(os.urandom(5000))
    blob_id = store.put_file(source, sha(source.read_bytes()))
    assert source.exists()
    assert store.path(blob_id).read_bytes() == source.read_bytes()
    with pytest.raises(ChecksumMismatch):
        store.put_file(source, sha(b"nope"))


def test_stale_temp_files_of_dead_writers_are_removed_live_ones_kept(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", reserve_bytes=0)
    dead = store.temp_dir / "w-dead.tmp"
    dead.write_bytes(b"left by a crashed writer")
    os.utime(dead, (1, 1))
    live = store.writer()
    live.write(b"in progress")
    os.utime(live.temp_path, (1, 1))  # old, but its writer still holds the flock
    BlobStore(store.root, reserve_bytes=0)  # a restart runs the cleanup
    assert not dead.exists()
    assert live.temp_path.exists()
    blob_id = live.commit()
    assert store.path(blob_id).read_bytes() == b"in progress"


class _CachestatRange(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Cachestat(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in ("cache", "dirty", "writeback", "evicted", "recently_evicted")
    ]


def _cachestat(fd: int, offset: int, length: int) -> _Cachestat:
    """Page-cache state of a file range: cachestat(2), Linux 6.5+ (x86-64 number)."""
    libc = ctypes.CDLL(None, use_errno=True)
    found = _Cachestat()
    span = _CachestatRange(offset, length)
    if libc.syscall(451, fd, ctypes.byref(span), ctypes.byref(found), 0) != 0:
        code = ctypes.get_errno()
        if code == errno.ENOSYS:  # a kernel feature, not a service: this machine has it
            pytest.skip("cachestat(2) needs Linux 6.5 or later")
        raise OSError(code, os.strerror(code))
    return found


def _dirty_pages(fd: int, offset: int, length: int) -> int:
    return int(_cachestat(fd, offset, length).dirty)


def test_the_writer_starts_writeback_while_bytes_still_arrive(store: BlobStore) -> None:
    """Every 32 MiB the kernel is told to write what came so far (the disk works during the
    transfer instead of all at the commit's fsync). The kernel on its own would leave these
    pages dirty for 30 s (vm.dirty_expire_centisecs)."""
    mib = 1 << 20
    chunk = os.urandom(4 * mib)
    with store.writer(size=40 * mib) as writer:
        for _ in range(10):
            writer.write(chunk)
        assert writer.written_back == 32 * mib
        fd = os.open(writer.temp_path, os.O_RDONLY)
        try:
            assert _dirty_pages(fd, 32 * mib, 8 * mib) > 0  # the tail waits for the commit
            deadline = time.monotonic() + 20
            while _dirty_pages(fd, 0, 32 * mib) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _dirty_pages(fd, 0, 32 * mib) == 0
        finally:
            os.close(fd)
        assert writer.commit() == sha(chunk * 10)


def test_start_writeback_is_only_a_hint() -> None:
    """A descriptor it cannot use is an answer of False, not an exception."""
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    assert start_writeback(fd, 0, 4096) is False


def _cached_pages(path: Path, length: int) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        return int(_cachestat(fd, 0, length).cache)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        4095,
        4096,
        4097,
        STAGE_BYTES - 1,
        STAGE_BYTES,
        STAGE_BYTES + 1,
        3 * STAGE_BYTES + 12345,
    ],
)
def test_a_direct_writer_stores_exactly_what_it_was_given(store: BlobStore, size: int) -> None:
    data = os.urandom(size)
    with store.writer(size=size, direct=True) as writer:
        assert writer.direct  # /tmp here is ext4
        offset = 0
        for step in itertools.cycle([1, 5000, 1 << 20, 777_777, 3]):  # ragged pieces
            if offset >= size:
                break
            writer.write(memoryview(data)[offset : offset + step])
            offset += step
        assert writer.commit(sha(data)) == sha(data)
    assert store.path(sha(data)).read_bytes() == data
    assert temp_files(store) == []


def test_direct_writes_bypass_the_page_cache(store: BlobStore) -> None:
    """A replica's bytes do not push the node's tiles out of memory (cachestat(2))."""
    chunk = os.urandom(4 << 20)
    with store.writer(size=16 << 20, direct=True) as writer:
        for _ in range(4):
            writer.write(chunk)
        assert _cached_pages(writer.temp_path, 16 << 20) == 0
        blob_id = writer.commit()
    with store.writer(size=16 << 20) as writer:  # the control: buffered
        for _ in range(4):
            writer.write(chunk[::-1])
        assert _cached_pages(writer.temp_path, 16 << 20) == 4096
        writer.commit()
    assert store.path(blob_id).read_bytes() == chunk * 4


def test_without_o_direct_the_writer_uses_the_page_cache(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A platform without the flag (macOS): the same writer, buffered."""
    monkeypatch.delattr(os, "O_DIRECT")
    data = os.urandom(STAGE_BYTES + 99)
    with store.writer(size=len(data), direct=True) as writer:
        assert not writer.direct
        writer.write(data)
        assert writer.commit() == sha(data)
    assert store.path(sha(data)).read_bytes() == data


def test_a_filesystem_refusing_direct_writes_gets_buffered_ones(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some filesystems take O_DIRECT at open and refuse the write (EINVAL): none here, so
    the refusal is injected; the writer goes on through the page cache, losing nothing."""
    real_pwrite = os.pwrite

    def refusing(fd: int, data: memoryview, offset: int) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", refusing)
    data = os.urandom(2 * STAGE_BYTES + 5000)
    with store.writer(size=len(data), direct=True) as writer:
        assert writer.direct
        writer.write(data)
        assert not writer.direct
        assert writer.commit() == sha(data)
    assert store.path(sha(data)).read_bytes() == data

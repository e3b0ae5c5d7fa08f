"""A writer's reservation (a replica being copied) binds every process sharing the blob
root, not only its own (issue 19, item 5): real processes, one a real replica writer."""

from __future__ import annotations

import multiprocessing
import os
import signal
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

import pytest

from slidestore.blobs import BlobStore
from slidestore.blobs.space import PROMISES_DIR
from slidestore.errors import InsufficientStorage
from slidestore.uploads import UploadManager

MB = 1 << 20
FREE = 10 * MB
COPY = 8 * MB
WRITTEN = 5 * MB


def fixed_free(_: Path) -> int:
    return FREE


def store(root: Path) -> BlobStore:
    return BlobStore(root / "blobs", reserve_bytes=0, free=fixed_free)


def _copy_in_a_process(root: str, conn: Connection) -> None:
    """Process A: a replica copy (a sized, direct writer, as ``replication._pull`` makes)
    that has received part of its bytes, then does what it is told."""
    data = os.urandom(COPY)
    writer = store(Path(root)).writer(COPY, direct=True)
    writer.write(data[:WRITTEN])
    conn.send(str(writer.temp_path))
    command = conn.recv()
    if command == "commit":
        writer.write(data[WRITTEN:])
        conn.send(writer.commit())
    else:
        writer.abort()
        conn.send(None)
    conn.recv()  # stay alive until told: the promise must be gone before the exit


def start_copy(root: Path) -> tuple[BaseProcess, Connection, Path]:
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    process = context.Process(target=_copy_in_a_process, args=(str(root), theirs))
    process.start()
    assert ours.poll(30), "the copying process did not start"
    return process, ours, Path(ours.recv())


def uploads(root: Path) -> UploadManager:
    """Process B's side: upload creation on the same blob root."""
    return UploadManager(
        root / "uploads", store(root), expiry_seconds=600, max_size=1 << 40, validate=None
    )


def assert_copy_promised(b: UploadManager, temp: Path) -> int:
    """B counts A's promise, net of the bytes A's temp file already holds."""
    on_disk = temp.stat().st_size
    assert 4 * MB <= on_disk <= WRITTEN  # (direct writes land 4 MiB at a time)
    promised = b.blobs.space.promised_bytes
    assert promised == COPY - on_disk
    return promised


@pytest.mark.parametrize("ending", ["commit", "abort"])
def test_another_process_sees_a_copy_in_flight_until_it_ends(tmp_path: Path, ending: str) -> None:
    store(tmp_path)  # the directories, once
    process, conn, temp = start_copy(tmp_path)
    try:
        b = uploads(tmp_path)
        promised = assert_copy_promised(b, temp)
        available = FREE - promised
        assert b.blobs.space.available_bytes() == available
        with pytest.raises(InsufficientStorage, match=f"{promised} bytes promised"):
            b.create(available + 1)
        conn.send(ending)
        assert conn.poll(30)
        blob_id = conn.recv()
        assert (blob_id is not None) == (ending == "commit")
        # Ended: nothing promised any more (a committed copy's bytes are on disk now).
        assert b.blobs.space.promised_bytes == 0
        assert list((tmp_path / "blobs" / PROMISES_DIR).iterdir()) == []
        b.create(available + 1)
        conn.send("exit")
    finally:
        process.join(30)
        process.kill()


def test_a_killed_copy_stops_binding_other_processes_at_once(tmp_path: Path) -> None:
    store(tmp_path)
    process, _conn, temp = start_copy(tmp_path)  # (kept: A waits on it, mid-copy)
    b = uploads(tmp_path)
    promised = assert_copy_promised(b, temp)
    with pytest.raises(InsufficientStorage):
        b.create(FREE - promised + 1)
    process.kill()  # SIGKILL mid-copy: no release, no cleanup of its own
    process.join(30)
    assert process.exitcode == -signal.SIGKILL
    # Its lock died with it: the promise counts nothing, and the first reader removes it.
    assert b.blobs.space.promised_bytes == 0
    assert list((tmp_path / "blobs" / PROMISES_DIR).iterdir()) == []
    b.create(FREE)


def test_a_reservation_counts_in_its_own_process_and_a_forgotten_one_is_released(
    tmp_path: Path,
) -> None:
    a = store(tmp_path)
    with a.writer(3 * MB) as writer:
        writer.write(b"x" * MB)
        assert a.space.promised_bytes == 2 * MB  # not buffered: the file holds 1 MiB
    assert a.space.promised_bytes == 0
    a.reserve(MB)  # dropped on the floor: garbage, so released
    assert a.space.promised_bytes == 0

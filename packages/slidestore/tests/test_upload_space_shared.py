"""Upload promises are read from the sessions on disk: every worker process sees them all."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from slidestore.blobs import BlobStore
from slidestore.errors import InsufficientStorage
from slidestore.uploads import UploadManager

FREE = 10_000_000


def fixed_free(_: Path) -> int:
    return FREE


def manager(root: Path) -> UploadManager:
    store = BlobStore(root / "blobs", reserve_bytes=0, free=fixed_free)
    return UploadManager(root / "uploads", store, expiry_seconds=3600, max_size=1 << 40)


def test_a_promise_made_by_one_manager_binds_another(tmp_path: Path) -> None:
    a, b = manager(tmp_path), manager(tmp_path)
    upload = a.create(6_000_000)
    assert b.blobs.space.promised_bytes == 6_000_000
    with pytest.raises(InsufficientStorage, match="6000000 bytes promised"):
        b.create(5_000_000)
    b.create(4_000_000)
    # Bytes that arrive (through either manager) leave the promise.
    assert b.append(upload.id, 0, [b"x" * 1_000_000]).offset == 1_000_000
    assert a.blobs.space.promised_bytes == 5_000_000 + 4_000_000
    a.terminate(upload.id)
    assert b.blobs.space.promised_bytes == 4_000_000
    # A restarted process sees the surviving session's promise without being told.
    assert manager(tmp_path).blobs.space.promised_bytes == 4_000_000


def _try_create(root: str, size: int, start: Any, results: Any) -> None:
    mgr = manager(Path(root))
    start.wait()
    try:
        mgr.create(size)
    except InsufficientStorage:
        results.put(False)
    else:
        results.put(True)


def test_concurrent_creates_in_two_processes_cannot_overcommit(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    for round_ in range(5):
        root = tmp_path / f"round{round_}"
        manager(root)  # create the directories once
        start, results = ctx.Event(), ctx.Queue()
        workers = [
            ctx.Process(target=_try_create, args=(str(root), 6_000_000, start, results))
            for _ in range(2)
        ]
        for worker in workers:
            worker.start()
        start.set()
        outcomes = sorted(results.get(timeout=30) for _ in workers)
        for worker in workers:
            worker.join(10)
        assert outcomes == [False, True]

"""When the node last answered someone waiting for it, so background sends can yield.

A node that is a repair source streams whole blobs to other nodes while viewers ask it for
tiles. Tiles win: while a request from a person (tiles, regions, zarr, uploads) arrived
within the last ``window`` seconds, replica sends pace themselves down to
``busy_replica_bytes_per_second`` (Ceph's recovery throttling makes the same trade). An
idle node sends at full speed, so repair of a quiet cluster is as fast as the disks.

The time lives in an 8-byte shared mapping, so every worker process of the node sees
every other's requests (CLOCK_MONOTONIC is system-wide). The mapping is a file in
``/dev/shm`` named after the data directory, never a file on the data disk: dirtying a
disk-backed page again after writeback cleaned it faults into the kernel's dirty-page
throttling, and while a repair writes hundreds of MB/s that stalled the tile-serving
thread for up to a second. Without ``/dev/shm`` each process keeps its own time.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import time
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

_STAMP = struct.Struct("d")
SHARED_MEMORY = Path("/dev/shm")
#: Requests that are not a person waiting: replica pulls, deletes by the coordinator,
#: health checks and scrapes.
_BACKGROUND_PREFIXES = ("/blobs/", "/replicas", "/admin/", "/healthz", "/readyz", "/metrics")


class Foreground:
    def __init__(self, data_dir: Path, *, window: float = 0.5) -> None:
        self.window = window
        self._map: mmap.mmap | bytearray
        if not SHARED_MEMORY.is_dir():
            self._map = bytearray(_STAMP.size)
            return
        key = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:24]
        fd = os.open(SHARED_MEMORY / f"slidestore-foreground-{key}", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _STAMP.size:
                os.ftruncate(fd, _STAMP.size)
            self._map = mmap.mmap(fd, _STAMP.size)
        finally:
            os.close(fd)

    def touch(self) -> None:
        _STAMP.pack_into(self._map, 0, time.monotonic())

    def busy(self) -> bool:
        last: float = _STAMP.unpack_from(self._map, 0)[0]
        return time.monotonic() - last < self.window


class MarkForeground:
    """Pure-ASGI middleware, outermost: stamps every request but background ones."""

    def __init__(self, app: ASGIApp, foreground: Foreground) -> None:
        self.app = app
        self.foreground = foreground

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(_BACKGROUND_PREFIXES):
            self.foreground.touch()
        await self.app(scope, receive, send)

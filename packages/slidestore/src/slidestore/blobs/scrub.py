"""Hashing stored files at a bounded pace."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slidestore.blobs.sums import ChunkSummer

_CHUNK = 1 << 20


class Throttle:
    """Sleeps so that bytes accounted since creation never run ahead of ``bytes_per_second``."""

    def __init__(self, bytes_per_second: float | None):
        if bytes_per_second is not None and bytes_per_second <= 0:
            raise ValueError(f"bytes_per_second must be positive, got {bytes_per_second}")
        self.bytes_per_second = bytes_per_second
        self._start = time.monotonic()
        self._done = 0

    def account(self, nbytes: int) -> None:
        ahead = self.delay(nbytes)
        if ahead > 0:
            time.sleep(ahead)

    def delay(self, nbytes: int) -> float:
        """Account ``nbytes`` and return how long to wait without sleeping (for async code,
        which must ``await asyncio.sleep`` instead of blocking its event loop)."""
        self._done += nbytes
        if self.bytes_per_second is None:
            return 0.0
        return max(0.0, self._done / self.bytes_per_second - (time.monotonic() - self._start))


def hash_file(
    path: Path, *, throttle: Throttle | None = None, summer: ChunkSummer | None = None
) -> str:
    """The lowercase hex sha256 of a file, read in 1 MiB chunks (fed to ``summer`` too,
    so one read also yields the blob's chunk checksums)."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        position = 0
        while chunk := os.pread(fd, _CHUNK, position):
            h.update(chunk)
            if summer is not None:
                summer.update(chunk)
            position += len(chunk)
            if throttle is not None:
                throttle.account(len(chunk))
        if hasattr(os, "posix_fadvise"):
            # A scrub reads every blob once; do not let it evict the hot tiles' pages.
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return h.hexdigest()

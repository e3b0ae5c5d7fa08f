"""Streaming writes into the store: temp file, hash as bytes pass, fsync, then publish."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from slidestore.blobs.direct import DirectSink
from slidestore.blobs.durable import start_writeback, write_all
from slidestore.blobs.space import Reservation, SpaceGuard
from slidestore.blobs.sums import ChunkSummer, ChunkSums
from slidestore.errors import ChecksumMismatch, InsufficientStorage, InvalidRequest

Publish = Callable[[Path, str, ChunkSums], None]
"""Puts a complete, fsynced temp file in place under its id, with its checksums (the
store's ``_install``): the writer's one way back into the store, so it needs no store."""

#: Start writing to disk every this many bytes (see ``durable.start_writeback``), so the
#: fsync in :meth:`BlobWriter.commit` finds little left to flush.
WRITEBACK_BYTES = 32 << 20


class BlobWriter:
    """Bytes on their way into a :class:`BlobStore`.

    The bytes go to a temp file on the store's own filesystem (so publishing is a link,
    not a copy), hashed (sha256, and per-chunk CRCs for the sidecar) as they pass. :meth:`commit` fsyncs, checks the hash and publishes
    the file under its sha256; until then no reader can see it. Leaving the ``with``
    block without committing discards everything. The temp file is ``flock``-ed for its
    whole life, which is how a restarted store tells a live writer's file from a crashed
    one's.

    Bytes go through the page cache, and every ``WRITEBACK_BYTES`` the kernel is told to
    start writing what came so far, so the disk works while bytes still arrive. With
    ``direct`` (replica copies: large, not read again soon) they bypass the page cache
    instead where the filesystem allows (see :mod:`slidestore.blobs.direct`).
    """

    def __init__(
        self,
        temp_dir: Path,
        space: SpaceGuard,
        publish: Publish,
        size: int | None,
        *,
        direct: bool = False,
    ):
        self._space = space
        self._publish = publish
        self.size = size
        fd, name = tempfile.mkstemp(prefix="w-", suffix=".tmp", dir=temp_dir)
        self.temp_path = Path(name)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Promised to this file: the promise shrinks as it grows, in every process.
            self._reservation: Reservation | None = (
                None if size is None else space.reserve(size, written=self.temp_path)
            )
        except BaseException:
            os.close(fd)
            self.temp_path.unlink()
            raise
        self._fd: int | None = fd
        self._hash = hashlib.sha256()
        self._sums = ChunkSummer()
        self.written = 0
        self.written_back = 0  # bytes whose writeback to disk has been started
        self.blob_id: str | None = None
        self._sink = DirectSink.open(self.temp_path, fd) if direct else None

    @property
    def direct(self) -> bool:
        """Whether the bytes bypass the page cache."""
        return self._sink is not None and self._sink.direct

    def write(self, data: bytes | bytearray | memoryview) -> None:
        fd = self._require_open()
        n = len(data)
        if self.size is not None and self.written + n > self.size:
            raise InvalidRequest(
                f"blob writer declared {self.size} bytes, got at least {self.written + n}"
            )
        if self._reservation is None and n > self._space.available_bytes():
            raise InsufficientStorage(
                f"writing {n} more bytes would eat into the node's free-space reserve"
            )
        if self._sink is not None:
            self._sink.write(data)
        else:
            write_all(fd, data)
        self._hash.update(data)
        self._sums.update(data)
        self.written += n
        if self._sink is None and self.written - self.written_back >= WRITEBACK_BYTES:
            start_writeback(fd, self.written_back, self.written - self.written_back)
            self.written_back = self.written

    def commit(self, expected_sha256: str | None = None) -> str:
        """Make the bytes durable and visible; returns the blob id.

        :class:`ChecksumMismatch` (and nothing kept) if they do not hash to
        ``expected_sha256``, or fewer bytes than the declared size arrived.
        """
        fd = self._require_open()
        try:
            if self.size is not None and self.written != self.size:
                raise InvalidRequest(
                    f"blob writer declared {self.size} bytes but only {self.written} arrived"
                )
            digest = self._hash.hexdigest()
            if expected_sha256 is not None and digest != expected_sha256.lower():
                raise ChecksumMismatch(
                    f"content hashes to sha256 {digest}, expected {expected_sha256}"
                )
            if self._sink is not None:
                self._sink.finish()
            os.fsync(fd)
            self._publish(self.temp_path, digest, self._sums.finish())
            self.blob_id = digest
            return digest
        finally:
            self._close(discard=True)

    def abort(self) -> None:
        if self._fd is not None:
            self._close(discard=True)

    def _require_open(self) -> int:
        if self._fd is None:
            raise InvalidRequest("blob writer is already committed or aborted")
        return self._fd

    def _close(self, *, discard: bool) -> None:
        fd, self._fd = self._fd, None
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.close()
        # Released before the temp file goes: a promise measured against a file already
        # gone would count its whole length again for a moment.
        if self._reservation is not None:
            self._reservation.release()
        if discard:
            with contextlib.suppress(FileNotFoundError):
                self.temp_path.unlink()  # after a commit this is only the extra link
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()

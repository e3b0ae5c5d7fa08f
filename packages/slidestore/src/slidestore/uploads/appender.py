"""Receiving one chunk of an upload: the only place bytes enter an upload's data file."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from slidestore.blobs.durable import write_all
from slidestore.blobs.sums import ChunkSummer
from slidestore.errors import (
    ChecksumMismatch,
    InsufficientStorage,
    InvalidRequest,
    UploadTooLarge,
)
from slidestore.uploads.checksums import ChunkChecksum
from slidestore.uploads.state import UploadInfo

_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


@dataclass(frozen=True, kw_only=True)
class SessionLedger:
    """What an :class:`Appender` needs from the store of upload sessions, and no more.

    The session store (:class:`~slidestore.uploads.manager.UploadManager`) hands one to
    each appender, so the appender never reaches back into the store (and the two modules
    do not import each other). Both callables run with the upload's lock held.
    """

    data_path: Path
    """The upload's data file."""
    checkpoint_bytes: int
    """A chunk without a chunk checksum is made durable every this many bytes."""
    advance: Callable[[UploadInfo, int, hashlib._Hash | None, ChunkSummer], UploadInfo]
    """Record that the bytes below an offset are fsynced (with the whole-file hash and the
    chunk checksums of exactly those bytes); returns the new durable state."""
    finish: Callable[[UploadInfo], UploadInfo]
    """Complete the upload if every byte has arrived (else return it unchanged)."""


class Appender:
    """One chunk on its way into an upload, holding the upload's lock until it ends.

    Bytes are written straight to the data file at the upload's offset (memory stays
    flat whatever the chunk size). The offset advances — durably: data fsynced first,
    then the state file replaced — at :meth:`commit`, and every
    ``checkpoint_bytes`` along the way when there is no chunk checksum to wait for.
    A chunk that fails its checksum or overruns the declared length is cut off again,
    leaving the upload at its previous offset.

    Every byte written is also fed to the upload's whole-file sha256 (when it is known
    up to the offset) and to its chunk checksums (:mod:`slidestore.uploads.sums`), so
    completing the upload reads nothing back.
    """

    def __init__(
        self,
        ledger: SessionLedger,
        info: UploadInfo,
        lock_fd: int,
        checksum: ChunkChecksum | None,
        file_hash: hashlib._Hash | None,
        summer: ChunkSummer,
    ):
        self._ledger = ledger
        self.info = info
        """The durable state: what a restart would find."""
        self._lock_fd: int | None = lock_fd
        self._checksum = checksum
        self._chunk_hash = checksum.hasher() if checksum is not None else None
        self._file_hash = file_hash
        self._summer = summer
        self._durable_sums = summer.mark()  # the summer at the durable offset
        self.start = info.offset
        self.position = info.offset
        self._data_fd: int | None = None
        if info.offset < info.length:
            fd = os.open(ledger.data_path, os.O_WRONLY)
            try:
                # Bytes past the durable offset were never acknowledged: drop them.
                os.ftruncate(fd, info.offset)
                os.lseek(fd, info.offset, os.SEEK_SET)
            except BaseException:
                os.close(fd)
                raise
            self._data_fd = fd

    @property
    def upload_id(self) -> str:
        return self.info.id

    @property
    def closed(self) -> bool:
        return self._lock_fd is None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed:
            raise InvalidRequest(f"upload {self.upload_id}: this chunk has already ended")
        n = len(data)
        if n == 0:
            return
        if self.position + n > self.info.length or self._data_fd is None:
            self._discard()
            raise UploadTooLarge(
                f"upload {self.upload_id} declared {self.info.length} bytes; this chunk "
                f"would take it past that (to at least {self.position + n}); "
                f"it stays at offset {self.info.offset}"
            )
        try:
            write_all(self._data_fd, data)
        except OSError as exc:
            self._discard()
            if exc.errno in _DISK_FULL:
                raise InsufficientStorage(
                    f"upload {self.upload_id}: the disk filled up while receiving"
                ) from exc
            raise
        if self._chunk_hash is not None:
            self._chunk_hash.update(data)
        if self._file_hash is not None:
            self._file_hash.update(data)
        self._summer.update(data)
        self.position += n
        if (
            self._chunk_hash is None
            and self.position - self.info.offset >= self._ledger.checkpoint_bytes
        ):
            self._persist()

    def commit(self) -> UploadInfo:
        """End the chunk: verify its checksum, make it durable, complete the upload if full.

        Completing may raise :class:`ChecksumMismatch` (whole-file sha256) or
        :class:`UnsupportedFormat`; the upload is then gone.
        """
        if self.closed:
            raise InvalidRequest(f"upload {self.upload_id}: this chunk has already ended")
        try:
            expected, actual = self._checksum, self._chunk_hash
            if expected is not None and actual is not None and actual.digest() != expected.digest:
                received = self.position - self.start
                self._truncate_back()
                raise ChecksumMismatch(
                    f"the chunk's {received} bytes do not match its "
                    f"{expected.algorithm} checksum; they were discarded and "
                    f"upload {self.upload_id} stays at offset {self.info.offset}"
                )
            self._persist()
            return self._ledger.finish(self.info)
        finally:
            self._close()

    def abort(self) -> UploadInfo:
        """The chunk ended early (e.g. the connection dropped).

        Keeps the bytes that arrived — unless a chunk checksum was declared, which they
        can no longer be checked against. Never completes the upload.
        """
        if not self.closed:
            try:
                if self._checksum is None:
                    self._persist()
                else:
                    self._truncate_back()
            finally:
                self._close()
        return self.info

    def _persist(self) -> None:
        if self.position == self.info.offset or self._data_fd is None:
            return
        os.fsync(self._data_fd)  # the bytes first, then the offset that vouches for them
        self.info = self._ledger.advance(self.info, self.position, self._file_hash, self._summer)
        self._durable_sums = self._summer.mark()

    def _truncate_back(self) -> None:
        if self._data_fd is not None:
            os.ftruncate(self._data_fd, self.info.offset)
        self.position = self.info.offset
        self._summer.rewind(self._durable_sums)

    def _discard(self) -> None:
        try:
            self._truncate_back()
        finally:
            self._close()

    def _close(self) -> None:
        data_fd, self._data_fd = self._data_fd, None
        lock_fd, self._lock_fd = self._lock_fd, None
        if data_fd is not None:
            os.close(data_fd)
        if lock_fd is not None:
            os.close(lock_fd)  # releases the flock

    def __enter__(self) -> Appender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()

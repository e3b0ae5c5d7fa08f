"""Per-chunk checksums of a stored blob, kept in a sidecar file next to it.

A blob's id is the sha256 of all its bytes, which proves nothing about a 20 KB tile read
from the middle of a 10 GB file without reading the other 10 GB. So every blob also has
a CRC-32 of each :data:`CHUNK` bytes, computed as the bytes are written (or, for blobs
stored before sidecars existed, once, while re-hashing the whole file against its id),
and every read checks the chunks it covers before a byte leaves the node.

CRC-32 is libdeflate's (``imagecodecs.deflate_crc32``): 13 GB/s here against 1.3 GB/s
for ``zlib.crc32``, so checking the chunks around a tile costs a few microseconds.

Sidecar layout (little-endian): magic ``SSUMS1\\0\\0``, chunk size (u32), reserved (u32),
blob size (u64), then one u32 CRC per chunk.
"""

from __future__ import annotations

import array
import os
import struct
import sys
import threading
from pathlib import Path
from typing import Final

import imagecodecs
import numpy as np
import numpy.typing as npt

from slidestore.blobs.durable import write_all

CHUNK: Final = 16 << 10
"""Small enough that checking a ~15 KB tile reads and sums about 32 KiB, not 128; a 25 GB
blob's sidecar is then 6 MB (a 2 GB one's 0.5 MB), kept in memory while in use."""
SUFFIX: Final = ".sums"
_MAGIC: Final = b"SSUMS1\0\0"
_HEADER: Final = struct.Struct("<8sIIQ")


def sidecar_path(blob_path: Path) -> Path:
    """Where the checksums of the blob stored at ``blob_path`` are kept."""
    return blob_path.with_name(blob_path.name + SUFFIX)


def crc32(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    return int(imagecodecs.deflate_crc32(data, value))


class ChunkSums:
    """The CRC of every chunk of one blob of ``size`` bytes."""

    def __init__(self, size: int, crcs: npt.NDArray[np.uint32], chunk: int = CHUNK) -> None:
        expected = -(-size // chunk)
        if len(crcs) != expected:
            raise ValueError(f"{len(crcs)} checksums for {size} bytes in chunks of {chunk}")
        self.size = size
        self.chunk = chunk
        self.crcs = crcs

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ChunkSums)
            and (self.size, self.chunk) == (other.size, other.chunk)
            and bool(np.array_equal(self.crcs, other.crcs))
        )

    __hash__ = None  # type: ignore[assignment]

    def aligned(self, start: int, end: int) -> tuple[int, int]:
        """The chunk-aligned range covering ``[start, end)`` (clipped to the blob)."""
        first = start - start % self.chunk
        last = min(self.size, -(-end // self.chunk) * self.chunk)
        return first, last

    def matches(self, offset: int, data: bytes | memoryview) -> bool:
        """Whether ``data``, read at chunk-aligned ``offset`` up to a chunk boundary or
        the blob's end, has the recorded checksums."""
        chunk = self.chunk
        if offset % chunk or (offset + len(data) != self.size and len(data) % chunk):
            raise ValueError("a checked read must cover whole chunks")
        view = memoryview(data)
        index = offset // chunk
        for at in range(0, len(view), chunk):
            if crc32(view[at : at + chunk]) != int(self.crcs[index]):
                return False
            index += 1
        return True

    def read(self, fd: int, start: int, end: int) -> bytes | None:
        """Bytes ``[start, end)`` of the open blob, or None when they (or the chunks around
        them) do not match their checksums or the file is short."""
        first, last = self.aligned(start, end)
        data = os.pread(fd, last - first, first)
        if len(data) != last - first or not self.matches(first, data):
            return None
        if first == start and last == end:
            return data
        return data[start - first : end - first]

    # -- the sidecar ----------------------------------------------------------------

    def dump(self, path: Path) -> None:
        """Write the sidecar durably and atomically (a reader sees the old or the new)."""
        # Per thread, not just per process: a scrub pass and a read that lost its cached
        # sums may write the same sidecar at once, and a shared temp name made the second
        # os.replace fail (a 500 from /admin/scrub in a CI fault run).
        temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
        try:
            try:
                write_all(fd, _HEADER.pack(_MAGIC, self.chunk, 0, self.size))
                write_all(fd, self.crcs.astype("<u4").tobytes())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)  # a failed write (ENOSPC) leaves no temp behind
            raise

    @classmethod
    def load(cls, path: Path) -> ChunkSums | None:
        """The sidecar at ``path``; None when it is missing or unreadable (then the
        checksums are computed again from a copy verified against its id)."""
        try:
            # One open file for header and body: the sidecar may be replaced or deleted
            # (its blob deleted) between two opens. Read, not memory-mapped: a sidecar
            # cut short under a mapping would crash the node (SIGBUS), not fail a check.
            with open(path, "rb") as f:
                header = f.read(_HEADER.size)
                body = f.read()
        except FileNotFoundError:
            return None
        if len(header) < _HEADER.size:
            return None
        magic, chunk, _, size = _HEADER.unpack(header)
        if magic != _MAGIC or chunk <= 0 or len(body) % 4:
            return None
        crcs = np.frombuffer(body, dtype="<u4").astype(np.uint32)
        try:
            return cls(size, crcs, chunk)
        except ValueError:
            return None


class ChunkSummer:
    """Computes :class:`ChunkSums` over bytes fed in order, in pieces of any size.

    The CRCs of complete chunks are kept in a compact array (4 bytes a chunk: 6 MB for a
    25 GB blob); :meth:`complete_crcs` hands them out for persisting, :meth:`resume`
    continues from persisted ones, and :meth:`mark`/:meth:`rewind` take back bytes fed
    after a mark (a chunk of an upload that was refused).
    """

    def __init__(self, chunk: int = CHUNK) -> None:
        self.chunk = chunk
        self._crcs = array.array("I")
        self._current = 0
        self._filled = 0
        self.size = 0

    @classmethod
    def resume(
        cls, complete: bytes | memoryview, tail: bytes | memoryview, chunk: int = CHUNK
    ) -> ChunkSummer:
        """A summer that has seen a prefix whose complete chunks have the CRCs
        ``complete`` (little-endian u32s) and whose last, partial chunk is ``tail``."""
        if len(complete) % 4 or len(tail) >= chunk:
            raise ValueError("complete CRCs must be whole u32s and the tail under a chunk")
        summer = cls(chunk)
        summer._crcs.frombytes(bytes(complete))
        if sys.byteorder != "little":
            summer._crcs.byteswap()
        summer.size = len(summer._crcs) * chunk
        summer.update(tail)
        return summer

    @property
    def complete(self) -> int:
        """How many chunks are complete (their CRCs final)."""
        return len(self._crcs)

    def complete_crcs(self, start: int = 0) -> bytes:
        """The CRCs of complete chunks from index ``start`` on, as little-endian u32s."""
        part = self._crcs[start:]
        if sys.byteorder != "little":
            part.byteswap()
        return part.tobytes()

    def mark(self) -> tuple[int, int, int, int]:
        return (len(self._crcs), self._current, self._filled, self.size)

    def rewind(self, mark: tuple[int, int, int, int]) -> None:
        """Back to the state of :meth:`mark` (only bytes fed since may be taken back)."""
        complete, self._current, self._filled, self.size = mark
        del self._crcs[complete:]

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        self.size += len(view)
        chunk = self.chunk
        at = 0
        while at < len(view):
            take = min(chunk - self._filled, len(view) - at)
            self._current = crc32(view[at : at + take], self._current)
            self._filled += take
            at += take
            if self._filled == chunk:
                self._crcs.append(self._current)
                self._current = self._filled = 0

    def finish(self) -> ChunkSums:
        crcs = np.frombuffer(self._crcs, dtype=np.uint32)
        if self._filled:
            crcs = np.append(crcs, np.uint32(self._current))
        return ChunkSums(self.size, crcs.astype(np.uint32, copy=True), self.chunk)

"""Reading a byte range of a blob in bounded chunks, for HTTP Range and replication."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

from slidestore.blobs.sums import ChunkSums
from slidestore.errors import RangeNotSatisfiable, ReplicaCorrupt, SlidestoreError

DEFAULT_CHUNK = 1 << 20


class BlobRange:
    """Bytes ``[start, end)`` of one blob, read with ``pread`` through an fd opened up front.

    Opening first means a blob deleted while it is being served still streams to the end
    (POSIX keeps the inode alive). Nothing is buffered beyond one chunk.

    With ``sums`` every byte is checked before it is returned: a file whose size differs
    from the recorded one fails on open, a chunk that does not match fails its read, both
    with :class:`ReplicaCorrupt` after calling ``on_corrupt`` (which quarantines the copy).
    """

    def __init__(
        self,
        path: Path,
        start: int,
        end: int | None,
        *,
        sums: ChunkSums | None = None,
        on_corrupt: Callable[[str], ReplicaCorrupt] | None = None,
    ):
        fd = os.open(path, os.O_RDONLY)
        self._sums = sums
        self._on_corrupt = on_corrupt
        try:
            self.size = os.fstat(fd).st_size
            if sums is not None and sums.size != self.size:
                raise self._corrupt(f"the file holds {self.size} bytes, not {sums.size}")
            stop = self.size if end is None else end
            if not 0 <= start <= stop <= self.size:
                raise RangeNotSatisfiable(
                    f"byte range [{start}, {stop}) is outside the blob's {self.size} bytes"
                )
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, start, stop - start, os.POSIX_FADV_SEQUENTIAL)
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd
        self.start = start
        self.end = stop
        self.position = start

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def remaining(self) -> int:
        return self.end - self.position

    def read(self, max_bytes: int = DEFAULT_CHUNK) -> bytes:
        """Up to ``max_bytes`` more bytes; ``b""`` once the range is exhausted."""
        if self._fd is None:
            raise ValueError("read from a closed BlobRange")
        n = min(max_bytes, self.end - self.position)
        if n <= 0:
            return b""
        if self._sums is not None:
            stop = self.position + n
            if (
                stop < self.end
                and stop % self._sums.chunk
                and stop - self.position > self._sums.chunk
            ):
                n -= stop % self._sums.chunk  # end on a chunk: the next read starts on one
            checked = self._sums.read(self._fd, self.position, self.position + n)
            if checked is None:
                raise self._corrupt(f"bytes around {self.position} do not match their checksums")
            data = checked
        else:
            data = os.pread(self._fd, n, self.position)
        if not data:
            raise SlidestoreError(f"blob shrank while being read (at byte {self.position})")
        self.position += len(data)
        return data

    def _corrupt(self, why: str) -> ReplicaCorrupt:
        if self._on_corrupt is not None:
            return self._on_corrupt(why)
        return ReplicaCorrupt(why)

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read():
            yield chunk

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> BlobRange:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

"""Reading a byte range of a blob in bounded chunks, for HTTP Range and replication."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from slidestore.errors import RangeNotSatisfiable, SlidestoreError

DEFAULT_CHUNK = 1 << 20


class BlobRange:
    """Bytes ``[start, end)`` of one blob, read with ``pread`` through an fd opened up front.

    Opening first means a blob deleted while it is being served still streams to the end
    (POSIX keeps the inode alive). Nothing is buffered beyond one chunk.
    """

    def __init__(self, path: Path, start: int, end: int | None):
        fd = os.open(path, os.O_RDONLY)
        try:
            self.size = os.fstat(fd).st_size
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
        data = os.pread(self._fd, n, self.position)
        if not data:
            raise SlidestoreError(f"blob shrank while being read (at byte {self.position})")
        self.position += len(data)
        return data

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

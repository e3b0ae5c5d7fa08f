"""One Deep Zoom level's encoded tiles in one file, found by an in-memory offset index.

Layout: the tiles' bytes back to back (in the order they were rendered, which need not
be raster order), then ``n`` little-endian uint64 pairs ``(start, length)`` indexed by
``row * columns + col`` (length 0: "not in the pack"), then a 16-byte footer: the magic
and ``n``. A pack is written to a
temporary name, fsynced and renamed, so a pack that exists is complete. Reading a tile is
one ``pread`` — the cost of a native tile passed through — and the index of a level of
15,000 tiles is 120 KB.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import numpy as np

from slidestore.errors import SlideReadError

MAGIC: Final = b"SSDZPK01"
_FOOTER: Final = struct.Struct("<8sQ")


def write_pack(path: Path, tiles: Iterable[tuple[int, bytes]], count: int) -> int:
    """Write ``(index, data)`` pairs as a pack of ``count`` slots at ``path``; returns its size.

    Slots never given stay empty. Nothing is visible at ``path`` until every tile is
    written and fsynced; an exception from ``tiles`` (a stop request, a read error)
    leaves no file behind.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    index = np.zeros((count, 2), dtype="<u8")
    position = 0
    try:
        with open(temporary, "wb") as out:
            for slot, data in tiles:
                if not 0 <= slot < count:
                    raise IndexError(f"tile slot {slot} outside 0..{count - 1} of {path.name}")
                out.write(data)
                index[slot] = (position, len(data))
                position += len(data)
            out.write(index.tobytes())
            out.write(_FOOTER.pack(MAGIC, count))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return position + index.nbytes + _FOOTER.size


class TilePack:
    """A pack opened for reading; thread-safe (``pread`` has no shared file position)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(self._fd).st_size
            if size < _FOOTER.size:
                raise SlideReadError(f"{path}: not a tile pack (too short)")
            magic, count = _FOOTER.unpack(os.pread(self._fd, _FOOTER.size, size - _FOOTER.size))
            index_bytes = count * 16
            if magic != MAGIC or size < _FOOTER.size + index_bytes:
                raise SlideReadError(f"{path}: not a tile pack")
            data_end = size - _FOOTER.size - index_bytes
            raw = os.pread(self._fd, index_bytes, data_end)
            self._index = np.frombuffer(raw, dtype="<u8").reshape(count, 2)
            if count and int((self._index[:, 0] + self._index[:, 1]).max()) > data_end:
                raise SlideReadError(f"{path}: tile pack index points past its data")
        except BaseException:
            self.close()
            raise
        self.count = int(count)

    def get(self, index: int) -> bytes | None:
        """Tile ``index``'s bytes, or None when the pack does not hold it."""
        start, length = self._index[index]
        if not length:
            return None
        return os.pread(self._fd, int(length), int(start))

    def close(self) -> None:
        fd, self._fd = getattr(self, "_fd", -1), -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        self.close()

"""One Deep Zoom level's encoded tiles in one file, found by an in-memory offset index.

Layout: the tiles' bytes back to back (in the order they were rendered, which need not
be raster order), then ``n`` little-endian uint64 triples ``(start, length, crc)``
indexed by ``row * columns + col`` (length 0: "not in the pack"; ``crc`` the CRC-32 of
the tile's bytes, taken as they were rendered), then a 16-byte footer: the magic and
``n``. A pack is written to a temporary name, fsynced and renamed, so a pack that exists
is complete. Reading a tile is one ``pread`` and a CRC of its ~15 KB (a microsecond) —
the cost of a native tile passed through — and the index of a level of 15,000 tiles is
360 KB. A tile whose bytes no longer match its CRC is never returned
(:class:`DamagedTile`): a pack is a cache of renders, so the caller renders it again.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import numpy as np

from slidestore.blobs.sums import crc32
from slidestore.errors import SlideReadError

MAGIC: Final = b"SSDZPK02"
_FOOTER: Final = struct.Struct("<8sQ")
_FIELDS: Final = 3  # start, length, crc


class DamagedTile(Exception):
    """A tile's bytes in a pack do not match the CRC written with them (or are cut short)."""


def write_pack(path: Path, tiles: Iterable[tuple[int, bytes]], count: int) -> int:
    """Write ``(index, data)`` pairs as a pack of ``count`` slots at ``path``; returns its size.

    Slots never given stay empty. Nothing is visible at ``path`` until every tile is
    written and fsynced; an exception from ``tiles`` (a stop request, a read error)
    leaves no file behind.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    index = np.zeros((count, _FIELDS), dtype="<u8")
    position = 0
    try:
        with open(temporary, "wb") as out:
            for slot, data in tiles:
                if not 0 <= slot < count:
                    raise IndexError(f"tile slot {slot} outside 0..{count - 1} of {path.name}")
                out.write(data)
                index[slot] = (position, len(data), crc32(data))
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
            index_bytes = count * 8 * _FIELDS
            if magic != MAGIC or size < _FOOTER.size + index_bytes:
                raise SlideReadError(f"{path}: not a tile pack")
            data_end = size - _FOOTER.size - index_bytes
            raw = os.pread(self._fd, index_bytes, data_end)
            self._index = np.frombuffer(raw, dtype="<u8").reshape(count, _FIELDS)
            if count and int((self._index[:, 0] + self._index[:, 1]).max()) > data_end:
                raise SlideReadError(f"{path}: tile pack index points past its data")
        except BaseException:
            self.close()
            raise
        self.count = int(count)
        self._damaged = np.zeros(self.count, dtype=np.bool_)

    def get(self, index: int) -> bytes | None:
        """Tile ``index``'s bytes, checked; None when the pack does not hold it.
        :class:`DamagedTile` when they fail their CRC (then and on every later call)."""
        start, length, crc = self._index[index]
        if not length:
            return None
        if self._damaged[index]:
            raise DamagedTile(f"{self.path}: tile {index} is damaged")
        data = os.pread(self._fd, int(length), int(start))
        if len(data) != length or crc32(data) != crc:
            self._damaged[index] = True
            raise DamagedTile(f"{self.path}: tile {index} does not match its CRC")
        return data

    def extent(self, index: int) -> tuple[int, int]:
        """``(start, length)`` of tile ``index``'s bytes in the file (length 0: absent)."""
        start, length, _ = self._index[index]
        return int(start), int(length)

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        fd, self._fd = getattr(self, "_fd", -1), -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        self.close()

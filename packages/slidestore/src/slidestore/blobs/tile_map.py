"""Where a TIFF blob's JPEG tiles lie: what the archive's JPEG XL encoding needs up front.

The archive streams a blob front to back and cannot seek in it, so the node holding the
blob (where seeking is cheap) reads the TIFF's directories with tifffile — never a tile —
and hands out each JPEG-compressed page's segments (tiles, or strips: an SVS thumbnail
and macro are JPEG strips) with that page's ``JPEGTables``. Anything that is not a TIFF
tifffile can parse, or has no JPEG page, maps to no tiles: the archive then falls back to
zstd or raw (``slidestore.blobs.archive_codec``).

On the wire it is msgpack with the numbers as packed little-endian arrays (12 bytes and a
2-byte tables index per tile: 1.4 MB for 100 000 tiles, where JSON would be ~5 MB).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Final, NamedTuple

import msgspec
import numpy as np
import tifffile

log = logging.getLogger(__name__)

JPEG: Final = 7
"""TIFF Compression of new-style JPEG (with JPEGTables); old-style (6) is left alone."""
MEDIA_TYPE: Final = "application/vnd.msgpack"


class Tile(NamedTuple):
    offset: int
    length: int
    tables: bytes
    """The page's JPEGTables (``b""``: the tile is a JPEG of its own)."""


class TileMap(msgspec.Struct, frozen=True, kw_only=True):
    tables: list[bytes] = []
    """Every JPEG page's JPEGTables, ``b""`` when it has none."""
    offsets: bytes = b""
    """``<u8`` per tile."""
    lengths: bytes = b""
    """``<u4`` per tile."""
    pages: bytes = b""
    """``<u2`` per tile: its index in :attr:`tables`."""

    def __post_init__(self) -> None:
        # Decoding runs this too (msgspec answers a ValidationError): a map that does not
        # add up is refused before anyone walks it.
        count = len(self.offsets) // 8
        if len(self.offsets) % 8 or len(self.lengths) != 4 * count or len(self.pages) != 2 * count:
            raise ValueError("tile map arrays of different lengths")
        if count and int(np.frombuffer(self.pages, "<u2").max()) >= len(self.tables):
            raise ValueError("tile map names a page it has no tables for")

    def __len__(self) -> int:
        return len(self.offsets) // 8

    @property
    def covered(self) -> int:
        """Bytes the tiles hold in all."""
        return int(np.frombuffer(self.lengths, "<u4").sum(dtype=np.uint64))

    def tiles(self) -> Iterator[Tile]:
        """In the order they lie in the blob (the map's own order means nothing)."""
        offsets = np.frombuffer(self.offsets, "<u8")
        lengths = np.frombuffer(self.lengths, "<u4")
        pages = np.frombuffer(self.pages, "<u2")
        for index in np.argsort(offsets, kind="stable").tolist():
            yield Tile(int(offsets[index]), int(lengths[index]), self.tables[int(pages[index])])


def encode(tile_map: TileMap) -> bytes:
    return msgspec.msgpack.encode(tile_map)


def decode(data: bytes) -> TileMap:
    """:class:`msgspec.DecodeError` (a ValueError) when ``data`` is not a tile map."""
    return msgspec.msgpack.decode(data, type=TileMap)


def read_tile_map(path: Path) -> TileMap:
    """The JPEG tiles of the TIFF at ``path`` (none for anything else); OSError if the
    file cannot be opened."""
    with path.open("rb") as handle:
        size = path.stat().st_size
        try:
            return _jpeg_segments(tifffile.TiffFile(handle), size)
        except Exception as exc:
            log.info("no tile map for %s: %s: %s", path.name, type(exc).__name__, exc)
            return TileMap()


def _jpeg_segments(tiff: tifffile.TiffFile, size: int) -> TileMap:
    tables: list[bytes] = []
    offsets: list[int] = []
    lengths: list[int] = []
    pages: list[int] = []
    with tiff:
        for page in tiff.pages:
            if not isinstance(page, tifffile.TiffPage) or page.compression != JPEG:
                continue
            index = len(tables)
            tables.append(bytes(page.jpegtables or b""))
            for offset, length in zip(page.dataoffsets, page.databytecounts, strict=True):
                # Only segments inside the file, of a size the container records (u4).
                if 0 < length < 1 << 32 and offset + length <= size:
                    offsets.append(offset)
                    lengths.append(length)
                    pages.append(index)
            if len(tables) == 1 << 16:
                break
    return TileMap(
        tables=tables,
        offsets=np.asarray(offsets, "<u8").tobytes(),
        lengths=np.asarray(lengths, "<u4").tobytes(),
        pages=np.asarray(pages, "<u2").tobytes(),
    )

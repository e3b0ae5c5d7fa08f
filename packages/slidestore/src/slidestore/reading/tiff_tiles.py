"""Where each native tile's bytes are in the file, read once with tifffile at open time.

OpenSlide hides the TIFF structure; tifffile exposes it. We match each OpenSlide level to
the tiled TIFF page of the same dimensions, keep the page's tile offsets and byte counts
and read tiles with ``os.pread`` (thread-safe, no shared file position).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
import tifffile

from slidestore.geometry import LevelInfo
from slidestore.jpeg_frame import (
    Frame,
    Truncated,
    check_frame,
    frame_fields,
    read_frame,
    starts_with_frame,
)
from slidestore.reading.jpeg import standalone, tile_header

_JPEG = 7
_PHOTOMETRIC_RGB = 2


@dataclass(frozen=True, slots=True)
class LevelTiles:
    """The stored JPEG tiles of one level, ready for passthrough.

    Every tile handed out has had its JPEG frame header checked against the tile size:
    a tile declaring more pixels raises :class:`DecompressionBomb` before any decoder
    (a client's, ours or OpenSlide's) sees it.
    """

    columns: int
    offsets: npt.NDArray[np.uint64]
    bytecounts: npt.NDArray[np.uint64]
    header: bytes
    tile_width: int
    tile_height: int
    name: str
    """How errors name the level: ``{path}: level {index}``."""
    tiles_alone: bool = False
    """The header's tables end cleanly and hold no frame, so a tile's own frame is the
    one a decoder uses: a tile starting with the expected frame needs no marker walk."""
    fields: bytes = b""
    """:func:`frame_fields` of the tile size (the bytes an exact frame holds)."""
    checked: npt.NDArray[np.bool_] = field(init=False, repr=False, compare=False)
    """Tiles whose frame :meth:`check` found good: file bytes never change, so the region
    reads of a viewer (many overlapping the same tiles) read each header once."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "checked", np.zeros(len(self.offsets), dtype=np.bool_))

    def read(
        self, fd: int, col: int, row: int, checked: Callable[[int, int], bytes] | None = None
    ) -> bytes | None:
        """The standalone JPEG of a tile, or ``None`` when the file stores no data for it.
        ``checked(start, end)``: how to read the file's bytes when they must be checked."""
        index = row * self.columns + col
        count = int(self.bytecounts[index])
        if count == 0:
            return None
        offset = int(self.offsets[index])
        data = os.pread(fd, count, offset) if checked is None else checked(offset, offset + count)
        if len(data) != count:
            raise OSError(f"short read: tile ({col}, {row}) is truncated in the file")
        jpeg = standalone(self.header, data)
        if not (self.tiles_alone and starts_with_frame(data, self.fields)):
            check_frame(
                frame_or_none(jpeg),
                self.tile_width,
                self.tile_height,
                f"{self.name} tile ({col}, {row})",
            )
        return jpeg

    def check(self, fd: int, col: int, row: int) -> None:
        """Check a tile's frame header reading only the start of it (for reads that
        OpenSlide decodes itself)."""
        index = row * self.columns + col
        count = int(self.bytecounts[index])
        if count and not self.checked[index]:
            check_frame(
                segment_frame(fd, int(self.offsets[index]), count, self.header),
                self.tile_width,
                self.tile_height,
                f"{self.name} tile ({col}, {row})",
            )
            self.checked[index] = True


def frame_or_none(data: bytes) -> Frame | None:
    try:
        return read_frame(data)
    except Truncated:
        return None


def tables_end_cleanly(header: bytes) -> bool:
    """Whether a header from :func:`tile_header` holds no frame and ends after a whole
    segment (so decoders read a tile's frame where the tile has it)."""
    try:
        read_frame(header)
    except Truncated as end:
        return end.at == len(header)
    return False


HEADER_PREFIX: Final = 512
"""Bytes read from the start of a segment to find its frame (Aperio's is in the first 20)."""
MAX_FRAME_SEARCH: Final = 1 << 18
"""A frame not within this many bytes (behind APPn segments) is refused, not searched for."""


def segment_frame(fd: int, offset: int, count: int, tables: bytes) -> Frame | None:
    """The frame a decoder would use for the stored segment at ``offset`` behind
    ``tables`` (a JPEGTables header from :func:`tile_header`), reading only its start."""
    size = min(count, HEADER_PREFIX)
    while True:
        data = os.pread(fd, size, offset)
        try:
            return read_frame(standalone(tables, data))
        except Truncated:  # the frame may lie further in
            if len(data) < size or size >= count or size >= MAX_FRAME_SEARCH:
                return None
            size = min(count, MAX_FRAME_SEARCH)


@dataclass(frozen=True, slots=True)
class TiledPage:
    """A tiled page of the file, as tifffile found it (any compression)."""

    width: int
    height: int
    tile_width: int
    tile_height: int
    offsets: npt.NDArray[np.uint64]
    bytecounts: npt.NDArray[np.uint64]
    jpeg: bool
    """Tiles stored as baseline RGB/YCbCr JPEG segments (passthrough is possible)."""
    jpegtables: bytes | None
    rgb: bool

    @property
    def columns(self) -> int:
        return -(-self.width // self.tile_width)

    def extent(self, col: int, row: int) -> tuple[int, int]:
        """``(offset, length)`` of tile (col, row)'s stored bytes (length 0: none)."""
        index = row * self.columns + col
        if index >= len(self.bytecounts):
            return 0, 0
        return int(self.offsets[index]), int(self.bytecounts[index])


def tiled_pages(path: str) -> list[TiledPage] | None:
    """Every tiled page of a TIFF file; None when tifffile cannot read it as a TIFF."""
    try:
        tif = tifffile.TiffFile(path)
    except Exception:
        return None
    found: list[TiledPage] = []
    with tif:
        try:
            pages = [p for p in tif.pages if isinstance(p, tifffile.TiffPage) and p.is_tiled]
            for page in pages:
                found.append(
                    TiledPage(
                        width=page.imagewidth,
                        height=page.imagelength,
                        tile_width=page.tilewidth,
                        tile_height=page.tilelength,
                        offsets=np.asarray(page.dataoffsets, dtype=np.uint64),
                        bytecounts=np.asarray(page.databytecounts, dtype=np.uint64),
                        jpeg=page.compression == _JPEG
                        and page.samplesperpixel == 3
                        and page.planarconfig == 1,
                        jpegtables=page.jpegtables,
                        rgb=page.photometric == _PHOTOMETRIC_RGB,
                    )
                )
        except Exception:  # a directory tifffile cannot follow: the layout is unknown
            return None
    return found


def level_pages(pages: Sequence[TiledPage], levels: Sequence[LevelInfo]) -> list[TiledPage | None]:
    """For each level, the tiled page that stores it (same size and tile size), if any."""
    found: list[TiledPage | None] = [None] * len(levels)
    for level in levels:
        for page in pages:
            if (page.width, page.height) != (level.width, level.height):
                continue
            if (page.tile_width, page.tile_height) != (level.tile_width, level.tile_height):
                continue
            found[level.index] = page
            break
    return found


def locate_tiles(
    path: str, levels: Sequence[LevelInfo], pages: Sequence[TiledPage | None] | None = None
) -> list[LevelTiles | None]:
    """For each level, its passthrough tiles, or ``None`` where passthrough is impossible.
    ``pages``: the levels' pages from :func:`level_pages` (else the file is read again)."""
    if pages is None:
        every = tiled_pages(path)
        pages = [None] * len(levels) if every is None else level_pages(every, levels)
    found: list[LevelTiles | None] = [None] * len(levels)
    for level in levels:
        page = pages[level.index]
        if page is None or not page.jpeg:
            continue
        header = tile_header(page.jpegtables, page.rgb)
        found[level.index] = LevelTiles(
            columns=level.columns,
            offsets=page.offsets,
            bytecounts=page.bytecounts,
            header=header,
            tiles_alone=tables_end_cleanly(header),
            fields=frame_fields(level.tile_width, level.tile_height),
            tile_width=level.tile_width,
            tile_height=level.tile_height,
            name=f"{path}: level {level.index}",
        )
    return found

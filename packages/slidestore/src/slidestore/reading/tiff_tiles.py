"""Where each native tile's bytes are in the file, read once with tifffile at open time.

OpenSlide hides the TIFF structure; tifffile exposes it. We match each OpenSlide level to
the tiled TIFF page of the same dimensions, keep the page's tile offsets and byte counts
and read tiles with ``os.pread`` (thread-safe, no shared file position).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import tifffile

from slidestore.geometry import LevelInfo
from slidestore.reading.jpeg import standalone, tile_header

_JPEG = 7
_PHOTOMETRIC_RGB = 2


@dataclass(frozen=True, slots=True)
class LevelTiles:
    """The stored JPEG tiles of one level, ready for passthrough."""

    columns: int
    offsets: npt.NDArray[np.uint64]
    bytecounts: npt.NDArray[np.uint64]
    header: bytes

    def read(self, fd: int, col: int, row: int) -> bytes | None:
        """The standalone JPEG of a tile, or ``None`` when the file stores no data for it."""
        index = row * self.columns + col
        count = int(self.bytecounts[index])
        if count == 0:
            return None
        data = os.pread(fd, count, int(self.offsets[index]))
        if len(data) != count:
            raise OSError(f"short read: tile ({col}, {row}) is truncated in the file")
        return standalone(self.header, data)


def locate_tiles(path: str, levels: Sequence[LevelInfo]) -> list[LevelTiles | None]:
    """For each level, its passthrough tiles, or ``None`` where passthrough is impossible."""
    found: list[LevelTiles | None] = [None] * len(levels)
    try:
        tif = tifffile.TiffFile(path)
    except Exception:
        return found
    with tif:
        pages = [p for p in tif.pages if isinstance(p, tifffile.TiffPage) and p.is_tiled]
        for level in levels:
            for page in pages:
                if (page.imagewidth, page.imagelength) != (level.width, level.height):
                    continue
                if (page.tilewidth, page.tilelength) != (level.tile_width, level.tile_height):
                    continue
                if page.compression != _JPEG or page.samplesperpixel != 3:
                    break
                if page.planarconfig != 1:
                    break
                found[level.index] = LevelTiles(
                    columns=level.columns,
                    offsets=np.asarray(page.dataoffsets, dtype=np.uint64),
                    bytecounts=np.asarray(page.databytecounts, dtype=np.uint64),
                    header=tile_header(page.jpegtables, page.photometric == _PHOTOMETRIC_RGB),
                )
                break
    return found

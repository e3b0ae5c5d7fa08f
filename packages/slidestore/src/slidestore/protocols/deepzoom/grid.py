"""The Deep Zoom tile grid: levels, their sizes and each tile's pixel box.

Deep Zoom numbers levels from the 1x1 image (level 0) up to full resolution (the last
level); each level halves the one above it, rounding odd sizes up, so level ``L`` is
``ceil(dim / 2**(last - L))``. Tiles are ``tile_size`` squares plus ``overlap`` pixels on
every side that has a neighbour; edge tiles are clipped to the level. This is the
arithmetic of OpenSlide's ``DeepZoomGenerator`` (with ``limit_bounds=False``), which the
tests use as the reference.
"""

from __future__ import annotations

import math
from typing import Final

from slidestore.errors import InvalidRequest, OutOfBounds
from slidestore.geometry import Region

MAX_TILE_SIZE: Final = 4096
"""Largest tile edge accepted; a tile is decoded and encoded in one piece."""


class DeepZoomGrid:
    """Pure geometry of a Deep Zoom pyramid over a ``width`` x ``height`` image."""

    def __init__(self, width: int, height: int, *, tile_size: int, overlap: int = 0):
        if width < 1 or height < 1:
            raise InvalidRequest(f"image size must be positive, got {width}x{height}")
        if not isinstance(tile_size, int) or not 1 <= tile_size <= MAX_TILE_SIZE:
            raise InvalidRequest(
                f"tile_size must be an int in 1..{MAX_TILE_SIZE}, got {tile_size!r}"
            )
        if not isinstance(overlap, int) or not 0 <= overlap < tile_size:
            raise InvalidRequest(
                f"overlap must be an int in 0..{tile_size - 1} (below tile_size), got {overlap!r}"
            )
        self.width = width
        self.height = height
        self.tile_size = tile_size
        self.overlap = overlap
        # ceil(log2(max dim)) + 1, without floating point.
        self.level_count: int = (max(width, height) - 1).bit_length() + 1
        self.level_dimensions: tuple[tuple[int, int], ...] = tuple(
            (
                _ceil_shift(width, self.level_count - 1 - level),
                _ceil_shift(height, self.level_count - 1 - level),
            )
            for level in range(self.level_count)
        )
        self.level_tiles: tuple[tuple[int, int], ...] = tuple(
            (math.ceil(w / tile_size), math.ceil(h / tile_size)) for w, h in self.level_dimensions
        )

    @property
    def tile_count(self) -> int:
        return sum(c * r for c, r in self.level_tiles)

    def scale_exponent(self, level: int) -> int:
        """``k`` such that the level is the full image downsampled by ``2**k``."""
        self.check_level(level)
        return self.level_count - 1 - level

    def check_level(self, level: int) -> None:
        if not isinstance(level, int) or not 0 <= level < self.level_count:
            raise OutOfBounds(
                f"Deep Zoom level {level!r} does not exist (levels 0..{self.level_count - 1})"
            )

    def tile_box(self, level: int, col: int, row: int) -> Region:
        """The tile's pixels in its level's coordinates, overlap included."""
        self.check_level(level)
        cols, rows = self.level_tiles[level]
        if not (
            isinstance(col, int) and isinstance(row, int) and 0 <= col < cols and 0 <= row < rows
        ):
            raise OutOfBounds(
                f"tile ({col!r}, {row!r}) is outside Deep Zoom level {level}'s {cols}x{rows} grid"
            )
        lw, lh = self.level_dimensions[level]
        x0, x1 = self._span(col, cols, lw)
        y0, y1 = self._span(row, rows, lh)
        return Region(x=x0, y=y0, width=x1 - x0, height=y1 - y0)

    def _span(self, index: int, count: int, length: int) -> tuple[int, int]:
        start = index * self.tile_size
        end = min(start + self.tile_size, length)
        before = self.overlap if index > 0 else 0
        after = self.overlap if index < count - 1 else 0
        # Clip the trailing overlap to the level, as OpenSeadragon computes tile bounds:
        # when the last tile is narrower than the overlap, the overlap cannot be filled.
        return start - before, min(end + after, length)


def _ceil_shift(value: int, shift: int) -> int:
    """``ceil(value / 2**shift)`` in integers."""
    return -(-value >> shift)

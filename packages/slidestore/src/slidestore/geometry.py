"""Frozen value objects describing where pixels are.

Coordinates follow OpenSlide: ``x`` grows to the right, ``y`` downwards, level 0 is the
full-resolution image, ``downsample`` is the level-0 pixels per level pixel.
"""

from __future__ import annotations

import msgspec


class LevelInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One resolution level of a slide as stored in the file."""

    index: int
    width: int
    height: int
    downsample: float
    tile_width: int
    tile_height: int

    @property
    def columns(self) -> int:
        return -(-self.width // self.tile_width)

    @property
    def rows(self) -> int:
        return -(-self.height // self.tile_height)

    @property
    def tile_count(self) -> int:
        return self.columns * self.rows

    def tile_region(self, col: int, row: int) -> Region:
        """The valid (clipped) area of tile (col, row) in this level's pixels."""
        x, y = col * self.tile_width, row * self.tile_height
        return Region(
            x=x,
            y=y,
            width=min(self.tile_width, self.width - x),
            height=min(self.tile_height, self.height - y),
        )


class Region(msgspec.Struct, frozen=True, kw_only=True):
    """An axis-aligned rectangle in one level's pixel space."""

    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    def intersection(self, other: Region) -> Region | None:
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1, y1 = min(self.right, other.right), min(self.bottom, other.bottom)
        if x1 <= x0 or y1 <= y0:
            return None
        return Region(x=x0, y=y0, width=x1 - x0, height=y1 - y0)


class TileAddress(msgspec.Struct, frozen=True):
    """A tile of one level's native grid."""

    level: int
    col: int
    row: int

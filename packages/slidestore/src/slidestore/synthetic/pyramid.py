"""Building every pyramid level in one pass over level 0, one tile row at a time.

Level 0 is rendered a tile row (a *band*) at a time. Each tile, once drawn, is encoded
and shrunk 4x into its place in the next level's band; four level-0 bands fill one
level-1 band, which is then encoded and shrunk in turn, and so on down. Memory is one
band per level (level 0: ``tile_size x width x 3`` bytes, 43 MB for a 60000 px wide
slide), whatever the height. Lower levels are therefore true 4x box-filtered
downsamples of the pixels above them (before JPEG compression, as a scanner would do).

Tile rows of lower levels are produced interleaved with level 0; they go to spool files
and are copied after level 0 so every level's tiles are contiguous in the slide, in
level order, like Aperio's.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
import numpy.typing as npt

from slidestore.synthetic.aperio import LEVEL_STEP
from slidestore.synthetic.rgb_jpeg import RgbJpegEncoder
from slidestore.synthetic.sample import RGB

Renderer = Callable[[int, RGB], "int | None"]
"""Draws level-0 tile ``col`` of one row into the given view; may return a glass variant
(see :meth:`TissueField.render`)."""


def reduce4(pixels: RGB) -> RGB:
    """4x4 box average (rounded) of an image whose sides are multiples of 4."""
    rows = pixels[0::4].astype(np.uint16)
    rows += pixels[1::4]
    rows += pixels[2::4]
    rows += pixels[3::4]
    cols = rows[:, 0::4] + rows[:, 1::4]
    cols += rows[:, 2::4]
    cols += rows[:, 3::4]
    cols += 8
    cols >>= 4
    return cols.astype(np.uint8)


class Appender(Protocol):
    def append(self, data: bytes) -> int: ...


class Spool:
    """A temporary file that collects one lower level's tiles until level 0 is done."""

    def __init__(self, directory: Path) -> None:
        # Next to the output, not in /tmp (often RAM-backed): it can be large. Closed by
        # close(), which the writer registers on its exit stack.
        self.file: BinaryIO = tempfile.TemporaryFile(dir=directory, prefix=".svs-spool-")  # noqa: SIM115
        self.position = 0

    def append(self, data: bytes) -> int:
        offset = self.position
        self.file.write(data)
        self.position += len(data)
        return offset

    def close(self) -> None:
        self.file.close()


class LevelTiles:
    """Where one written level's tiles went: offsets and byte counts, row-major."""

    def __init__(self, columns: int, rows: int, target: Appender) -> None:
        self.columns, self.rows = columns, rows
        self.target = target
        self.offsets: npt.NDArray[np.uint64] = np.zeros(columns * rows, dtype=np.uint64)
        self.counts: npt.NDArray[np.uint64] = np.zeros(columns * rows, dtype=np.uint64)

    def write_row(self, row: int, tiles: Sequence[bytes]) -> None:
        start = row * self.columns
        for index, data in enumerate(tiles, start):
            self.offsets[index] = self.target.append(data)
            self.counts[index] = len(data)

    def rebase(self, base: int) -> None:
        """The spooled tiles now start at ``base`` in the slide."""
        self.offsets += np.uint64(base)


class _Level:
    def __init__(
        self, width: int, height: int, tile_size: int, glass: npt.NDArray[np.uint8]
    ) -> None:
        self.width, self.height, self.tile_size = width, height, tile_size
        self.columns = math.ceil(width / tile_size)
        self.rows = math.ceil(height / tile_size)
        self.band: RGB = np.empty((tile_size, self.columns * tile_size, 3), dtype=np.uint8)
        self.band[...] = glass
        self.glass = glass
        self.tiles: LevelTiles | None = None
        self.keep: RGB | None = None

    def valid_rows(self, row: int) -> int:
        return min(self.tile_size, self.height - row * self.tile_size)

    def pad(self, row: int) -> None:
        """Paint the band's area outside the image glass (edge tiles' padding)."""
        self.band[self.valid_rows(row) :] = self.glass
        self.band[:, self.width :] = self.glass


class PyramidBuilder:
    """Feeds level-0 tile rows through every level.

    ``sizes`` lists every level to compute; levels with a :class:`LevelTiles` in
    ``outputs`` are encoded and stored, others only feed smaller levels. The level
    ``keep`` is also assembled whole in memory (for the thumbnail; choose a small one).
    """

    def __init__(
        self,
        sizes: Sequence[tuple[int, int]],
        tile_size: int,
        glass: npt.NDArray[np.uint8],
        encoder: RgbJpegEncoder,
        outputs: Sequence[LevelTiles | None],
        keep: int | None,
        glass_tiles: Sequence[RGB],
        executor: Executor | None,
    ) -> None:
        self.levels = [_Level(w, h, tile_size, glass) for w, h in sizes]
        for level, output in zip(self.levels, outputs, strict=False):
            level.tiles = output
        if keep is not None:
            kept = self.levels[keep]
            kept.keep = np.empty((kept.height, kept.width, 3), dtype=np.uint8)
        self.tile_size = tile_size
        self.encoder = encoder
        self.executor = executor
        # Glass tiles recur by the thousand on level 0: encode and shrink each once.
        self.glass_streams = [encoder.encode(tile) for tile in glass_tiles]
        self.glass_reduced = [reduce4(tile) for tile in glass_tiles]

    @property
    def kept(self) -> RGB | None:
        return next((level.keep for level in self.levels if level.keep is not None), None)

    def run(
        self,
        renderer_for_row: Callable[[int], Renderer],
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Render, encode and shrink all of level 0 and with it every other level.

        ``progress`` gets (level-0 tile rows done, total) after each row.
        """
        rows = self.levels[0].rows
        for row in range(rows):
            self._band(0, row, renderer_for_row(row))
            if progress is not None:
                progress(row + 1, rows)

    def _band(self, index: int, row: int, render: Renderer | None) -> None:
        level = self.levels[index]
        ts = self.tile_size
        below = self.levels[index + 1] if index + 1 < len(self.levels) else None
        if below is not None and row // LEVEL_STEP >= below.rows:
            below = None  # these rows shrink to less than one pixel of the next level
        quarter = ts // LEVEL_STEP
        slot = (row % LEVEL_STEP) * quarter
        encode = level.tiles is not None

        def tile(col: int) -> bytes:
            view = level.band[:, col * ts : (col + 1) * ts]
            variant = render(col, view) if render is not None else None
            data = b""
            if encode:
                data = (
                    self.glass_streams[variant]
                    if variant is not None
                    else self.encoder.encode(view)
                )
            if below is not None:
                target = below.band[slot : slot + quarter, col * quarter : (col + 1) * quarter]
                target[...] = self.glass_reduced[variant] if variant is not None else reduce4(view)
            return data

        columns = range(level.columns)
        if self.executor is not None:
            results = list(self.executor.map(tile, columns))
        else:
            results = [tile(col) for col in columns]
        if level.tiles is not None:
            level.tiles.write_row(row, results)
        if level.keep is not None:
            valid = level.valid_rows(row)
            level.keep[row * ts : row * ts + valid] = level.band[:valid, : level.width]
        if below is not None and (row % LEVEL_STEP == LEVEL_STEP - 1 or row == level.rows - 1):
            below_row = row // LEVEL_STEP
            below.pad(below_row)
            self._band(index + 1, below_row, None)

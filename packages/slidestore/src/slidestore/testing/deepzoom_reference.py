"""Deep Zoom tiles against OpenSlide's ``DeepZoomGenerator`` (``limit_bounds=False``).

Geometry (levels, tile grids, tile sizes) must be identical; every tile within
PSNR >= 40 dB of the generator's, except on the few Deep Zoom levels whose whole image
is under 8 pixels a side. There a Lanczos kernel spans the image a handful of times over
and the generator's own ``Image.thumbnail`` even changes the aspect ratio (a 2x2 level
comes back 1x2), so the generator is no reference: those tiles are held to an area
average (box filter) of the whole image instead, within a mean of 20 grey levels
(measured: at most 18.3 on boxes.tiff's 1x1 level, where the generator is as far). The
same holds for the odd tile the generator returns a pixel short of the size it declares
itself (``Image.thumbnail`` keeps the aspect ratio of the region it read).

Shipped with the library so the Deep Zoom tests and the reader conformance kit compare
the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import openslide
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image

from slidestore.testing.compare import psnr

if TYPE_CHECKING:
    from slidestore.protocols.deepzoom import DeepZoom

MIN_PSNR: Final = 40.0
TINY: Final = 8
"""Tiles with a side under this many pixels are compared by mean colour, not PSNR."""
TINY_MEAN_TOLERANCE: Final = 20.0


def reference(path: Path, tile_size: int, overlap: int) -> DeepZoomGenerator:
    return DeepZoomGenerator(
        openslide.OpenSlide(path), tile_size=tile_size, overlap=overlap, limit_bounds=False
    )


def _addresses(cols: int, rows: int, sample: bool) -> list[tuple[int, int]]:
    if not sample:
        return [(col, row) for row in range(rows) for col in range(cols)]
    corners = {(0, 0), (cols - 1, 0), (0, rows - 1), (cols - 1, rows - 1), (cols // 2, rows // 2)}
    return sorted(corners)


def compare_all_tiles(
    dz: DeepZoom, ref: DeepZoomGenerator, *, sample: bool = False
) -> dict[int, float]:
    """Check every tile of every level (with ``sample``, every level's corner and centre
    tiles); return the worst PSNR per level."""
    assert dz.level_count == ref.level_count
    assert dz.level_dimensions == ref.level_dimensions
    assert dz.level_tiles == ref.level_tiles
    slide = dz.slide
    whole = Image.fromarray(slide.read_region((0, 0), 0, slide.dimensions))
    worst: dict[int, float] = {}
    for level in range(dz.level_count):
        cols, rows = dz.level_tiles[level]
        area = np.asarray(whole.resize(dz.level_dimensions[level], Image.Resampling.BOX))
        for col, row in _addresses(cols, rows, sample):
            w, h = dz.tile_dimensions(level, col, row)
            assert (w, h) == ref.get_tile_dimensions(level, (col, row))
            ours = dz.tile_pixels(level, col, row)
            assert ours.shape == (h, w, 3)
            theirs = ref.get_tile(level, (col, row)).convert("RGB")
            if min(dz.level_dimensions[level]) < TINY or theirs.size != (w, h):
                # No usable reference: compare with the area average of the image.
                box = dz.grid.tile_box(level, col, row)
                expected = area[box.y : box.bottom, box.x : box.right]
                diff = float(np.abs(ours.astype(np.int16) - expected).mean())
                assert diff <= TINY_MEAN_TOLERANCE, (level, col, row, diff)
                continue
            value = psnr(ours, np.asarray(theirs))
            worst[level] = min(worst.get(level, float("inf")), value)
            assert value >= MIN_PSNR, (level, col, row, value)
    return worst

"""Reading a sub-pixel box of one pyramid level and resampling it to a given size.

Shared by Deep Zoom (every tile that is not a stored tile as is: other scales, tile
sizes, overlap) and IIIF (arbitrary regions and sizes). The box is read with a margin of source pixels
around it, so the filter sees the same neighbourhood it would see on the whole level:
adjacent tiles and adjacent bands join without seams. Large outputs are produced in
horizontal bands so the source pixels held at once stay bounded whatever the request.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

import numpy as np
from PIL import Image

from slidestore.errors import OutOfBounds
from slidestore.geometry import Region
from slidestore.imaging import RGBArray

if TYPE_CHECKING:
    from slidestore.pyramid import Pyramid

Box = tuple[float, float, float, float]
"""``(x0, y0, x1, y1)`` in one level's pixel coordinates, fractional allowed."""

BAND_SOURCE_PIXELS: Final = 8 * 2**20
"""Source pixels read per band (24 MiB of RGB), which bounds a request's working set."""

# Lanczos for reduction (sharp, little aliasing); bicubic for enlargement, where
# Lanczos' ringing shows around the hard edges of tissue and pen marks.
_DOWN: Final = Image.Resampling.LANCZOS
_UP: Final = Image.Resampling.BICUBIC
_SUPPORT: Final = {_DOWN: 3.0, _UP: 2.0}


def read_scaled(
    pyramid: Pyramid,
    level: int,
    box: Box,
    size: tuple[int, int],
    *,
    stretch_edges: bool = False,
    band_source_pixels: int = BAND_SOURCE_PIXELS,
    reducing_gap: float | None = None,
) -> RGBArray:
    """Pixels of ``box`` on pyramid ``level``, resampled to ``size`` (width, height).

    Where the box reaches past the level's edge (the last pixel of a ceil-rounded
    level does), the missing source pixels replicate the edge, as the pyramid's derived
    levels do, so content keeps its exact position. With ``stretch_edges`` the box is
    instead clipped to the level and what remains is stretched over the output, which
    is what OpenSlide's Deep Zoom generator does (content near the far edge moves by up
    to a pixel). A box within half a pixel of whole pixels of the output size is read as
    is, without resampling.
    """
    info = pyramid.levels[level]
    x0, y0, x1, y1 = box
    out_w, out_h = size
    if not (x0 < info.width and y0 < info.height and x1 > 0 and y1 > 0 and x1 > x0 and y1 > y0):
        raise OutOfBounds(
            f"box {box} lies outside pyramid level {level} ({info.width}x{info.height})"
        )
    if stretch_edges:
        x0, y0 = max(0.0, x0), max(0.0, y0)
        x1, y1 = min(float(info.width), x1), min(float(info.height), y1)
    if _snap(x0, x1, out_w, info.width) and _snap(y0, y1, out_h, info.height):
        region = Region(x=_round(x0), y=_round(y0), width=out_w, height=out_h)
        return pyramid.read(level, region)

    sx, sy = (x1 - x0) / out_w, (y1 - y0) / out_h
    resample, mx, my = _filter(sx, sy)
    # Source columns read: the box plus the filter's reach, within the level (Pillow
    # renormalizes the kernel at the level's edges); then the part of the box itself
    # that lies beyond the level, filled by edge replication.
    rx0 = min(max(0, math.floor(x0) - mx), info.width - 1)
    rx1 = max(min(info.width, math.ceil(x1) + mx), rx0 + 1)
    px0, px1 = max(0, rx0 - math.floor(x0)), max(0, math.ceil(x1) - rx1)

    # Output rows per band so that one band's source read stays within budget.
    src_rows_budget = max(1, band_source_pixels // (rx1 - rx0 + px0 + px1))
    band = max(1, min(out_h, math.floor((src_rows_budget - 2 * my) / sy)))
    out = np.empty((out_h, out_w, 3), dtype=np.uint8)
    for r0 in range(0, out_h, band):
        r1 = min(out_h, r0 + band)
        fy0, fy1 = y0 + r0 * sy, y0 + r1 * sy
        ry0 = min(max(0, math.floor(fy0) - my), info.height - 1)
        ry1 = max(min(info.height, math.ceil(fy1) + my), ry0 + 1)
        py0, py1 = max(0, ry0 - math.floor(fy0)), max(0, math.ceil(fy1) - ry1)
        source = pyramid.read(level, Region(x=rx0, y=ry0, width=rx1 - rx0, height=ry1 - ry0))
        if px0 or px1 or py0 or py1:
            source = np.pad(source, ((py0, py1), (px0, px1), (0, 0)), mode="edge")
        ox, oy = rx0 - px0, ry0 - py0  # level coordinates of source[0, 0]
        scaled = Image.fromarray(source).resize(
            (out_w, r1 - r0),
            resample,
            box=(x0 - ox, fy0 - oy, x1 - ox, fy1 - oy),
            reducing_gap=reducing_gap,
        )
        out[r0:r1] = np.asarray(scaled)
    return out


def peak_source_pixels(
    pyramid: Pyramid,
    level: int,
    box: Box,
    size: tuple[int, int],
    *,
    band_source_pixels: int = BAND_SOURCE_PIXELS,
) -> int:
    """Source pixels :func:`read_scaled` holds at once for these arguments (without
    ``stretch_edges``): 0 when the box is read as is (the read is the output), else one
    band of the box plus the filter's reach, at most ``band_source_pixels`` and its
    margin rows."""
    info = pyramid.levels[level]
    x0, y0, x1, y1 = box
    out_w, out_h = size
    if _snap(x0, x1, out_w, info.width) and _snap(y0, y1, out_h, info.height):
        return 0
    _, mx, my = _filter((x1 - x0) / out_w, (y1 - y0) / out_h)
    width = math.ceil(x1 - x0) + 2 * mx + 2
    height = math.ceil(y1 - y0) + 2 * my + 2
    return min(width * height, band_source_pixels + width * (2 * my + 2))


def level_scale(pyramid: Pyramid, level: int) -> tuple[float, float]:
    """Pixels of pyramid ``level`` per level-0 pixel, along x and y.

    A native level is the scanner's rendering of the whole image into its size. A
    derived level halves the level above it exactly (pixel ``i`` covers finer pixels
    ``2i`` and ``2i + 1``, the last one possibly past the edge), so its scale is that of
    the nearest native level above it divided by the powers of two in between.
    """
    base = pyramid.levels[0]
    anchor = level
    while pyramid.levels[anchor].native_level is None:
        anchor -= 1  # level 0 is always native
    info = pyramid.levels[anchor]
    halvings = 2.0 ** (anchor - level)
    return info.width / base.width * halvings, info.height / base.height * halvings


def _filter(sx: float, sy: float) -> tuple[Image.Resampling, int, int]:
    """The filter for scale factors (source pixels per output pixel) ``sx``, ``sy`` and
    how many source pixels it reaches beyond the box on each side (x, y)."""
    resample = _DOWN if max(sx, sy) > 1.0 else _UP
    support = _SUPPORT[resample]
    return (
        resample,
        math.ceil(support * max(sx, 1.0)) + 1,
        math.ceil(support * max(sy, 1.0)) + 1,
    )


def _snap(start: float, end: float, out: int, length: int) -> bool:
    """Whether [start, end) is, within half a pixel, ``out`` whole pixels of the level.

    Such a box is read as is: resampling it would blur the image for a geometric
    correction below half a pixel (OpenSlide itself floors fractional positions).
    """
    first = _round(start)
    return (
        abs((end - start) - out) <= 0.5
        and _round(end) - first == out
        and first >= 0
        and first + out <= length
    )


def _round(value: float) -> int:
    return math.floor(value + 0.5)

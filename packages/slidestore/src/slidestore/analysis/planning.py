"""Which pixels a model reads and which tiles get a task.

``choose_read`` picks the pyramid level (and a resampling factor when no level has the
model's target mpp within 10%); ``plan_tiles`` lays the tile grid over the slide or a
region, row-major, and keeps only the tiles the low-level tissue mask touches.
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image

from slidestore.analysis.errors import SlideUnsuitable
from slidestore.analysis.model import InputSpec
from slidestore.analysis.sources import PixelSource
from slidestore.errors import InvalidRequest, OutOfBounds
from slidestore.imaging import RGBArray

__all__ = [
    "Read",
    "TileJob",
    "choose_read",
    "plan_tiles",
    "planning_mask",
    "read_tile",
    "tissue_plan_mask",
]

MPP_TOLERANCE: Final = 0.10
PLANNING_MASK_PIXELS: Final = 2048 * 2048
"""The tissue mask for planning is made on the finest pyramid level at most this large."""


@dataclass(frozen=True)
class Read:
    """Tiles are cut from pyramid ``level`` and scaled by ``1 / scale`` (1 when native)."""

    level: int
    downsample: float
    """Level-0 pixels per pixel of the arrays the model gets."""
    scale: float
    """Pixels of ``level`` per pixel of the arrays (> 1 when resampled)."""
    width: int
    """Size of the slide in the arrays' pixels."""
    height: int
    mpp: float | None


@dataclass(frozen=True)
class TileJob:
    """One planned tile, in the arrays' pixels (without overlap)."""

    index: int
    ox: int
    oy: int
    width: int
    height: int


def _read_at(source: PixelSource, level: int, downsample: float, mpp: float | None) -> Read:
    native = source.levels[level]
    scale = downsample / native.downsample
    if abs(scale - 1) < 1e-9:
        width, height, scale = native.width, native.height, 1.0
    else:
        width, height = math.ceil(source.width / downsample), math.ceil(source.height / downsample)
    return Read(level, downsample, scale, width, height, None if mpp is None else mpp * downsample)


def choose_read(source: PixelSource, spec: InputSpec, region_pixels: int | None = None) -> Read:
    """The level (and resampling) ``spec`` asks for on this slide."""
    mpp = source.mpp
    if (spec.needs_mpp or spec.target_mpp is not None) and mpp is None:
        raise SlideUnsuitable(
            "the model needs the slide's microns per pixel, which it does not record"
        )
    if spec.level is not None:
        if not 0 <= spec.level < len(source.levels):
            raise SlideUnsuitable(
                f"the model reads pyramid level {spec.level}; the slide has levels "
                f"0..{len(source.levels) - 1}"
            )
        read = _read_at(source, spec.level, source.levels[spec.level].downsample, mpp)
    elif spec.target_mpp is not None and mpp is not None:
        want = spec.target_mpp / mpp
        close = [
            lv
            for lv in source.levels
            if abs(lv.downsample * mpp - spec.target_mpp) <= MPP_TOLERANCE * spec.target_mpp
        ]
        if close:
            best = min(close, key=lambda lv: abs(lv.downsample * mpp - spec.target_mpp))  # type: ignore[operator]
            read = _read_at(source, best.index, best.downsample, mpp)
        else:
            finer = [lv for lv in source.levels if lv.downsample <= want] or [source.levels[0]]
            read = _read_at(source, finer[-1].index, want, mpp)
    else:
        read = _read_at(source, 0, source.levels[0].downsample, mpp)
    if spec.whole_image:
        pixels = region_pixels if region_pixels is not None else source.width * source.height
        if pixels / read.downsample**2 > spec.max_whole_pixels:
            # Too big for one array: the finest native level that fits.
            for lv in source.levels:
                if pixels / lv.downsample**2 <= spec.max_whole_pixels:
                    return _read_at(source, lv.index, lv.downsample, mpp)
            last = source.levels[-1]
            return _read_at(source, last.index, last.downsample, mpp)
    return read


def check_region(
    source: PixelSource, region: tuple[int, int, int, int] | None
) -> tuple[int, int, int, int]:
    """The region (level-0 x, y, w, h) clipped to the slide; the whole slide when None."""
    if region is None:
        return 0, 0, source.width, source.height
    try:
        x, y, w, h = (int(v) for v in region)
    except (TypeError, ValueError):
        raise InvalidRequest(f"region must be (x, y, width, height), got {region!r}") from None
    if w <= 0 or h <= 0:
        raise InvalidRequest(f"region size must be positive, got {w}x{h}")
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, source.width), min(y + h, source.height)
    if x1 <= x0 or y1 <= y0:
        raise OutOfBounds(f"region {w}x{h} at ({x}, {y}) lies outside the slide")
    return x0, y0, x1 - x0, y1 - y0


def tissue_plan_mask(source: PixelSource) -> tuple[np.ndarray, float]:
    """(mask, level-0 pixels per mask pixel) from the finest level at most 2048² pixels."""
    from scipy import ndimage

    from slidestore.analysis.models.tissue import tissue_mask

    level = next(
        (lv for lv in source.levels if lv.width * lv.height <= PLANNING_MASK_PIXELS),
        source.levels[-1],
    )
    pixels = source.read(level.index, 0, 0, level.width, level.height)
    mask, _ = tissue_mask(pixels)
    # One mask pixel of margin: a tile that only touches the tissue edge still gets a task.
    return ndimage.binary_dilation(mask), level.downsample


PlanMask = tuple[np.ndarray, float]

PLANNING_MASKS_KEPT: Final = 4
_masks: collections.OrderedDict[Hashable, PlanMask] = collections.OrderedDict()
_masks_lock = threading.Lock()


def planning_mask(identity: Hashable, source: PixelSource) -> PlanMask:
    """``tissue_plan_mask(source)``, kept for the last few slides by ``identity`` (which
    must change when the slide's content does: a blob id, or a file's path, size and
    mtime). A second run on a slide plans at once instead of re-reading a level."""
    with _masks_lock:
        found = _masks.get(identity)
        if found is not None:
            _masks.move_to_end(identity)
            return found
    mask = tissue_plan_mask(source)
    mask[0].flags.writeable = False  # shared by later runs
    with _masks_lock:
        _masks[identity] = mask
        while len(_masks) > PLANNING_MASKS_KEPT:
            _masks.popitem(last=False)
    return mask


def plan_tiles(
    read: Read,
    spec: InputSpec,
    region: tuple[int, int, int, int],
    mask: tuple[np.ndarray, float] | None,
) -> list[TileJob]:
    """The tile grid over ``region`` (row-major), keeping tiles the mask touches."""
    x, y, w, h = region
    d = read.downsample
    ox0, oy0 = math.floor(x / d), math.floor(y / d)
    ox1, oy1 = min(math.ceil((x + w) / d), read.width), min(math.ceil((y + h) / d), read.height)
    if spec.whole_image:
        return [TileJob(0, ox0, oy0, ox1 - ox0, oy1 - oy0)]
    size = spec.tile_size
    jobs: list[TileJob] = []
    for oy in range(oy0, oy1, size):
        for ox in range(ox0, ox1, size):
            tw, th = min(size, ox1 - ox), min(size, oy1 - oy)
            if mask is not None:
                array, md = mask
                mx0, my0 = math.floor(ox * d / md), math.floor(oy * d / md)
                mx1, my1 = math.ceil((ox + tw) * d / md), math.ceil((oy + th) * d / md)
                if not array[my0:my1, mx0:mx1].any():
                    continue
            jobs.append(TileJob(len(jobs), ox, oy, tw, th))
    return jobs


def read_tile(
    source: PixelSource, read: Read, job: TileJob, overlap: int
) -> tuple[RGBArray, int, int]:
    """``(pixels, overlap_left, overlap_top)``: the tile plus the overlap the slide has room for."""
    left, top = min(overlap, job.ox), min(overlap, job.oy)
    right = max(0, min(overlap, read.width - job.ox - job.width))
    bottom = max(0, min(overlap, read.height - job.oy - job.height))
    ox, oy = job.ox - left, job.oy - top
    ow, oh = job.width + left + right, job.height + top + bottom
    if read.scale == 1.0:
        return source.read(read.level, ox, oy, ow, oh), left, top
    s = read.scale
    lx, ly = math.floor(ox * s), math.floor(oy * s)
    lw, lh = max(1, math.ceil((ox + ow) * s) - lx), max(1, math.ceil((oy + oh) * s) - ly)
    pixels = source.read(read.level, lx, ly, lw, lh)
    image = Image.fromarray(pixels).resize((ow, oh), Image.Resampling.BOX)
    return np.asarray(image), left, top

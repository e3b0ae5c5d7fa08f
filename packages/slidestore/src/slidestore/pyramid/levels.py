"""The level plan: which power-of-two levels a slide's pyramid has and where each comes from.

Level ``k`` has nominal downsample ``2**k``. It is *native* when the slide stores a level
of (nearly) that size whose tiles the reading core returns exactly; otherwise it is
*derived*: each tile is the 2x2 box mean of the level above it (see ``derive.py``).
Levels stop at the first one that fits in a single tile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slidestore.geometry import LevelInfo

if TYPE_CHECKING:
    from slidestore.source import SlideSource


class PyramidLevel(LevelInfo, frozen=True, kw_only=True):
    """One level of the zarr pyramid: array ``str(index)``, chunks of one native tile.

    ``index`` 0 is full resolution, level ``k`` has nominal downsample ``2**k``;
    ``downsample`` is the actual level-0 pixels per pixel of this level (``width0 / width``).
    """

    native_level: int | None
    """The slide level presenting this level, ``None`` when it is derived."""


def _close(actual: int, target: int) -> bool:
    # 1 px absorbs floor-vs-ceil differences between scanners; 1 % absorbs scanners that
    # round their level sizes to a multiple of something on big slides.
    return abs(actual - target) <= max(1.0, 0.01 * target)


def _tile_origins_exact(length: int, tile: int, downsample: float) -> bool:
    # Without stored JPEG tiles, ``read_tile`` asks OpenSlide for the region at
    # level-0 location round(x * downsample); OpenSlide divides by the downsample again and
    # resamples by the fractional remainder. Only when that round trip lands exactly on
    # the tile origin are the pixels the level's true pixels (boxes.tiff level 2 is off by
    # up to 2 grey levels at tile 1, 0), and a pyramid level must be exact to be stitched.
    return all(round(x * downsample) / downsample == x for x in range(0, length, tile))


def reads_exactly(slide: SlideSource, info: LevelInfo) -> bool:
    """Whether every ``slide.read_tile`` of this level returns the stored pixels unchanged."""
    if info.index == 0 or slide.can_passthrough(info.index):
        return True
    return _tile_origins_exact(info.width, info.tile_width, info.downsample) and (
        _tile_origins_exact(info.height, info.tile_height, info.downsample)
    )


def _native_for(slide: SlideSource, width: int, height: int) -> LevelInfo | None:
    base = slide.levels[0]
    best: LevelInfo | None = None
    for info in slide.levels[1:]:
        if not (_close(info.width, width) and _close(info.height, height)):
            continue
        # Chunks are level 0's tile size; a level with another grid cannot be a chunk grid.
        if (info.tile_width, info.tile_height) != (base.tile_width, base.tile_height):
            continue
        if not reads_exactly(slide, info):
            continue
        if best is None or abs(info.width - width) + abs(info.height - height) < abs(
            best.width - width
        ) + abs(best.height - height):
            best = info
    return best


def plan_levels(slide: SlideSource) -> tuple[PyramidLevel, ...]:
    """The pyramid levels of ``slide``, finest first."""
    base = slide.levels[0]
    tw, th = base.tile_width, base.tile_height
    levels = [
        PyramidLevel(
            index=0,
            width=base.width,
            height=base.height,
            downsample=1.0,
            tile_width=tw,
            tile_height=th,
            native_level=0,
        )
    ]
    while levels[-1].width > tw or levels[-1].height > th:
        k = len(levels)
        prev = levels[-1]
        native = _native_for(slide, -(-base.width // 2**k), -(-base.height // 2**k))
        if native is not None:
            width, height = native.width, native.height
        else:
            width, height = -(-prev.width // 2), -(-prev.height // 2)
        levels.append(
            PyramidLevel(
                index=k,
                width=width,
                height=height,
                downsample=base.width / width,
                tile_width=tw,
                tile_height=th,
                native_level=None if native is None else native.index,
            )
        )
    return tuple(levels)

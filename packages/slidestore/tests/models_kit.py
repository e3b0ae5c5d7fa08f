"""Running a model's ``process_tile``/``reduce`` directly on a slide, without the engine.

The model tests check the algorithms on real pixels read with ``slidestore.open_slide``;
this walks the slide in row-major tiles (every tile, no tissue planning) at an integer
downsample of level 0 (box-filtered), with the overlap the model asks for, and builds
the contexts the engine would. The engine's own tiling is tested with the engine.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import numpy as np

from slidestore import open_slide
from slidestore.analysis.model import Reduced, SlideContext, TileContext, TileOutput


def box_reduce(pixels: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return pixels
    h, w = pixels.shape[0] // factor, pixels.shape[1] // factor
    block = pixels[: h * factor, : w * factor].reshape(h, factor, w, factor, 3)
    sums = block.sum(axis=(1, 3), dtype=np.uint32)
    return ((sums + factor * factor // 2) // (factor * factor)).astype(np.uint8)


def run_tiles(
    model: Any,
    path: Any,
    params: msgspec.Struct | None = None,
    *,
    downsample: int = 1,
    tile_size: int | None = None,
) -> tuple[list[TileOutput], Reduced, SlideContext]:
    params = params if params is not None else model.params_type()
    tile = tile_size or model.input.tile_size
    overlap = model.input.overlap
    with open_slide(path) as slide:
        width, height = slide.dimensions
        mpp = slide.metadata.mpp_x
        cols = math.ceil(width / downsample / tile)
        rows = math.ceil(height / downsample / tile)
        outputs: list[TileOutput] = []
        plan: list[tuple[int, int]] = []
        for row in range(rows):
            for col in range(cols):
                # Tile and overlap in read-level pixels, clipped to the slide.
                x, y = col * tile, row * tile
                w = min(tile, width // downsample - x)
                h = min(tile, height // downsample - y)
                if w <= 0 or h <= 0:
                    continue
                left, top = min(overlap, x), min(overlap, y)
                right = min(overlap, width // downsample - x - w)
                bottom = min(overlap, height // downsample - y - h)
                region = slide.read_region(
                    ((x - left) * downsample, (y - top) * downsample),
                    0,
                    ((w + left + right) * downsample, (h + top + bottom) * downsample),
                )
                ctx = TileContext(
                    x=x * downsample,
                    y=y * downsample,
                    width=w,
                    height=h,
                    overlap_left=left,
                    overlap_top=top,
                    downsample=float(downsample),
                    mpp=None if mpp is None else mpp * downsample,
                    index=len(outputs),
                )
                outputs.append(model.process_tile(box_reduce(region, downsample), ctx, params))
                plan.append((ctx.x, ctx.y))
    slide_ctx = SlideContext(
        width=width,
        height=height,
        mpp=mpp,
        read_downsample=float(downsample),
        tile_size=tile,
        plan=tuple(plan),
        tissue_fraction=None,
    )
    return outputs, model.reduce(outputs, slide_ctx, params), slide_ctx

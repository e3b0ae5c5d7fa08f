"""The real tissue that synthetic slides are made of.

CMU-1-Small-Region is small (2220x2967) but two thirds of it is empty glass, so we use
its densest square of tissue as the texture and its empty areas to learn the colour of
the glass. Both are read once per process (OpenSlide decodes exactly as it will decode
our output) and cached.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import openslide

from slidestore.datapaths import sample_slide_path

RGB = npt.NDArray[np.uint8]

TEXTURE_SIDE: Final = 1024
"""Side of the tissue square cut from the sample (smaller if the sample is smaller)."""

MAX_READ_SIDE: Final = 4096
"""Larger samples are read from a central window of this size, to bound memory."""

_SEARCH_STEP: Final = 32
_FALLBACK_GLASS: Final = (245, 243, 243)


@dataclass(frozen=True, slots=True)
class SampleTissue:
    """A square of real tissue and the colour of the glass around it."""

    texture: RGB
    glass: tuple[int, int, int]
    source: Path


def _tissue_mask(pixels: RGB) -> npt.NDArray[np.bool_]:
    """Stained tissue is darker or more saturated than glass (H&E: pink and purple)."""
    lo = pixels.min(axis=2).astype(np.int16)
    hi = pixels.max(axis=2).astype(np.int16)
    result: npt.NDArray[np.bool_] = (lo < 200) | (hi - lo > 25)
    return result


def _densest_square(mask: npt.NDArray[np.bool_], side: int) -> tuple[int, int]:
    """Top-left corner (x, y) of the ``side``-square holding the most tissue."""
    h, w = mask.shape
    step = _SEARCH_STEP
    # Coarse grid of tissue counts, then a summed-area table over it.
    gh, gw = h // step, w // step
    cells = mask[: gh * step, : gw * step].reshape(gh, step, gw, step).sum(axis=(1, 3))
    table = np.zeros((gh + 1, gw + 1), dtype=np.int64)
    table[1:, 1:] = cells.cumsum(axis=0).cumsum(axis=1)
    n = side // step
    if n < 1 or n > gh or n > gw:
        return 0, 0
    sums = table[n:, n:] - table[:-n, n:] - table[n:, :-n] + table[:-n, :-n]
    gy, gx = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(gx) * step, int(gy) * step


@functools.lru_cache(maxsize=4)
def _load(path: str) -> SampleTissue:
    with openslide.OpenSlide(path) as slide:
        full_w, full_h = slide.dimensions
        width, height = min(full_w, MAX_READ_SIDE), min(full_h, MAX_READ_SIDE)
        origin = ((full_w - width) // 2, (full_h - height) // 2)
        pixels = np.asarray(slide.read_region(origin, 0, (width, height)).convert("RGB"))
    mask = _tissue_mask(pixels)
    side = min(TEXTURE_SIDE, width, height)
    x, y = _densest_square(mask, side)
    texture = np.ascontiguousarray(pixels[y : y + side, x : x + side])
    texture.setflags(write=False)
    empty = pixels[~mask & (pixels.min(axis=2) > 225)]
    if len(empty) >= 1000:
        glass = tuple(int(v) for v in np.median(empty, axis=0))
    else:
        glass = _FALLBACK_GLASS
    return SampleTissue(texture=texture, glass=(glass[0], glass[1], glass[2]), source=Path(path))


def load_sample(path: str | os.PathLike[str] | None = None) -> SampleTissue:
    """The sample's tissue square and glass colour (default: CMU-1-Small-Region.svs)."""
    resolved = Path(path) if path is not None else sample_slide_path()
    if not resolved.is_file():
        raise FileNotFoundError(f"sample slide not found: {resolved}")
    return _load(str(resolved.resolve()))

"""Derived levels: 2x2 box means, defined so that tiles can be computed independently.

A derived level has ``ceil(finer / 2)`` pixels per axis. Output pixel (x, y) is the mean of
finer pixels (2x, 2y), (2x+1, 2y), (2x, 2y+1), (2x+1, 2y+1), rounded half up as
``(a + b + c + d + 2) // 4``; where the finer level has an odd size the missing last
column/row is the replicated edge pixel. Because the pyramid's tiles are the same size on
every level, derived tile (col, row) needs exactly finer tiles (2col..2col+1, 2row..2row+1),
so computing it tile by tile gives bit-for-bit the same image as halving the whole level.
"""

from __future__ import annotations

import numpy as np

from slidestore import imaging
from slidestore.imaging import RGBArray


def halve(pixels: RGBArray) -> RGBArray:
    """Box-average an ``(h, w, 3)`` image to ``(ceil(h/2), ceil(w/2), 3)``, edges replicated."""
    h, w = pixels.shape[:2]
    wide = pixels.astype(np.uint16)
    if w % 2:
        wide = np.concatenate([wide, wide[:, -1:]], axis=1)
    if h % 2:
        wide = np.concatenate([wide, wide[-1:]], axis=0)
    total = wide[0::2, 0::2] + wide[0::2, 1::2] + wide[1::2, 0::2] + wide[1::2, 1::2]
    total += 2
    total >>= 2
    return total.astype(np.uint8)


def derive_tile(
    finer: list[list[RGBArray | None]],
    valid_width: int,
    valid_height: int,
    tile_width: int,
    tile_height: int,
    background: tuple[int, int, int],
) -> RGBArray:
    """One derived tile from the 2x2 finer tiles that cover it (``finer[dy][dx]``).

    ``None`` marks a finer tile beyond the finer level's grid. ``valid_*`` is how much of
    the 2x2 block lies inside the finer level; the rest of the output is background.
    """
    block = imaging.fill(2 * tile_height, 2 * tile_width, background)
    for dy, row in enumerate(finer):
        for dx, tile in enumerate(row):
            if tile is not None:
                y, x = dy * tile_height, dx * tile_width
                block[y : y + tile_height, x : x + tile_width] = tile
    half = halve(block[:valid_height, :valid_width])
    if half.shape[:2] == (tile_height, tile_width):
        return half
    out = imaging.fill(tile_height, tile_width, background)
    out[: half.shape[0], : half.shape[1]] = half
    return out

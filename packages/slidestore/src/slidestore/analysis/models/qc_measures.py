"""Per-pixel classes and per-cell statistics of the ``qc`` model (pure numpy).

Colours are judged in HSV (hue, saturation and value all in [0, 1], as skimage's
``rgb2hsv`` gives them; computed here in float32, several times faster). The ranges below were chosen against CMU-1-Small-Region (H&E, Aperio) and the
synthetic pen stroke of ``slidestore.testing.qc_slide``; on CMU-1 no 64-pixel cell has
more than 6% "blue" or 9% "black" pixels, while a pen stroke crossing a cell covers
30-60% of it, hence the default ``pen_min_fraction`` of 0.2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy import ndimage

BACKGROUND_MIN_VALUE: Final = 0.8
BACKGROUND_MAX_SATURATION: Final = 0.1
"""Glass: bright and nearly grey (CMU-1's glass is (245, 243, 243): value 0.96, sat 0.01)."""

BLUE_HUE: Final = (0.55, 0.70)
"""Blue ink, 198°-252°. Haematoxylin is purple (hue 0.70-0.85) and rarely this saturated."""
BLUE_MIN_SATURATION: Final = 0.5
GREEN_HUE: Final = (0.20, 0.50)
"""Green ink, 72°-180°: no H&E stain is green."""
GREEN_MIN_SATURATION: Final = 0.3
INK_MIN_VALUE: Final = 0.1
"""Below this everything is "black" anyway."""
BLACK_MAX_VALUE: Final = 0.15
"""Black ink (and debris): darker than any stained nucleus on CMU-1 in quantity.

Red ink is not looked for: by colour it cannot be told from eosin (HistoQC leaves it to
per-site colour files too)."""


@dataclass(frozen=True)
class CellStats:
    """Statistics of each ``cell`` x ``cell`` block of a tile (edge blocks may be partial)."""

    tissue: np.ndarray  # fraction of the cell's pixels that are tissue
    background: np.ndarray  # ... glass
    pen: np.ndarray  # ... ink of any colour
    focus: np.ndarray  # variance of the Laplacian over tissue pixels (NaN: no tissue)


def rgb_to_hsv(pixels: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> float32 HSV in [0, 1] (hue 0 where grey)."""
    rgb = pixels.astype(np.float32) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    high = rgb.max(axis=2)
    delta = high - rgb.min(axis=2)
    safe = np.where(delta > 0, delta, 1.0)
    hue = np.where(
        high == r,
        ((g - b) / safe) % 6.0,
        np.where(high == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    hue = np.where(delta > 0, hue / 6.0, 0.0)
    saturation = np.where(high > 0, delta / np.where(high > 0, high, 1.0), 0.0)
    return np.stack([hue, saturation, high], axis=2).astype(np.float32)


def pen_mask(hsv: np.ndarray) -> np.ndarray:
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    coloured = val >= INK_MIN_VALUE
    blue = coloured & (hue >= BLUE_HUE[0]) & (hue <= BLUE_HUE[1]) & (sat >= BLUE_MIN_SATURATION)
    green = coloured & (hue >= GREEN_HUE[0]) & (hue <= GREEN_HUE[1]) & (sat >= GREEN_MIN_SATURATION)
    result: np.ndarray = blue | green | (val < BLACK_MAX_VALUE)
    return result


def _cell_sums(values: np.ndarray, cell: int) -> np.ndarray:
    """Sum of ``values`` over each cell (zero-padded to whole cells)."""
    h, w = values.shape
    ny, nx = -(-h // cell), -(-w // cell)
    padded = np.zeros((ny * cell, nx * cell), dtype=np.float64)
    padded[:h, :w] = values
    result: np.ndarray = padded.reshape(ny, cell, nx, cell).sum(axis=(1, 3))
    return result


def cell_stats(pixels: np.ndarray, cell: int) -> CellStats:
    """Classify ``pixels`` (h, w, 3 uint8) and summarise them per cell."""
    hsv = rgb_to_hsv(pixels)
    background = (hsv[..., 2] > BACKGROUND_MIN_VALUE) & (hsv[..., 1] < BACKGROUND_MAX_SATURATION)
    pen = pen_mask(hsv) & ~background
    tissue = ~background & ~pen
    # Focus on grey levels in [0, 1]; the Laplacian of the whole tile (reflected at its
    # edges) so that cell borders are no edges.
    grey = pixels.astype(np.float32).mean(axis=2) / 255.0
    laplacian = ndimage.laplace(grey).astype(np.float64)
    count = _cell_sums(np.ones(grey.shape), cell)
    n_tissue = _cell_sums(tissue, cell)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = _cell_sums(laplacian * tissue, cell) / n_tissue
        focus = _cell_sums(laplacian**2 * tissue, cell) / n_tissue - mean**2
    focus[n_tissue == 0] = np.nan
    return CellStats(
        tissue=(n_tissue / count).astype(np.float32),
        background=(_cell_sums(background, cell) / count).astype(np.float32),
        pen=(_cell_sums(pen, cell) / count).astype(np.float32),
        focus=np.maximum(focus, 0.0).astype(np.float32),
    )

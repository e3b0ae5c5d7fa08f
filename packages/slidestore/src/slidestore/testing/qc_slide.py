"""A small Aperio slide with known quality defects, for the ``qc`` model's tests.

The tissue is the synthetic generator's (:class:`slidestore.synthetic.tissue.TissueField`:
one island of real CMU-1 tissue on glass), rendered whole in memory (the slide is small),
then spoiled in known places: a rectangle blurred as a scanner out of focus would
(Gaussian, ``BLUR_SIGMA`` level-0 pixels) and a blue pen stroke (a thick line of ink laid
over the tissue like a felt-tip marker). A third rectangle is left untouched, to show a
clean region is not flagged. :func:`write_array_svs` writes any RGB array as a tiled JPEG
Aperio pyramid with tifffile (also used to make slides of synthetic nuclei).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import tifffile
from scipy import ndimage

from slidestore.synthetic.aperio import LEVEL_STEP, LIBRARY, level_sizes, thumbnail_size
from slidestore.synthetic.sample import RGB, load_sample
from slidestore.synthetic.tissue import RIM, TissueField

BLUR_SIGMA: Final = 6.0
"""Gaussian sigma of the blurred rectangle, level-0 pixels (≈3 µm: clearly out of focus)."""

PEN_INK: Final = (35, 70, 175)
"""The blue marker's colour where it is laid on glass; over tissue it darkens (multiply)."""

PEN_WIDTH: Final = 70
"""Pen stroke width in level-0 pixels (≈35 µm at 0.5 µm/px, a fine felt-tip)."""

Box = tuple[int, int, int, int]
"""Level-0 (x0, y0, x1, y1), x1/y1 exclusive."""


@dataclass(frozen=True, slots=True)
class QcSlide:
    """Where the defects are (level-0 pixels)."""

    path: Path
    width: int
    height: int
    mpp: float
    blur: Box
    pen_start: tuple[int, int]
    pen_end: tuple[int, int]
    pen_width: int
    clean: Box

    def pen_mask(self) -> np.ndarray:
        """Level-0 boolean mask of the pen stroke."""
        return _stroke_mask(self.width, self.height, self.pen_start, self.pen_end, self.pen_width)

    def pen_box(self) -> Box:
        ys, xs = np.nonzero(self.pen_mask())
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _stroke_mask(
    width: int, height: int, start: tuple[int, int], end: tuple[int, int], stroke: int
) -> np.ndarray:
    """Pixels within ``stroke / 2`` of the segment start-end (a round-ended line)."""
    (x0, y0), (x1, y1) = start, end
    half = stroke // 2 + 1
    left, top = max(0, min(x0, x1) - half), max(0, min(y0, y1) - half)
    right, bottom = min(width, max(x0, x1) + half), min(height, max(y0, y1) + half)
    ys, xs = np.mgrid[top:bottom, left:right].astype(np.float32)
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / float(dx * dx + dy * dy), 0.0, 1.0)
    distance = np.hypot(xs - (x0 + t * dx), ys - (y0 + t * dy))
    result = np.zeros((height, width), dtype=bool)
    result[top:bottom, left:right] = distance <= stroke / 2
    return result


def render_tissue(field: TissueField) -> RGB:
    """The generator's level-0 tissue, whole."""
    tile_size = field.tile_size
    out = np.empty((field.rows * tile_size, field.columns * tile_size, 3), np.uint8)
    for row in range(field.rows):
        render = field.renderer(row)
        for col in range(field.columns):
            render(
                col, out[row * tile_size : (row + 1) * tile_size, col * tile_size :][:, :tile_size]
            )
    return out[: field.height, : field.width]


def _inside_island(field: TissueField, box: Box) -> bool:
    island = field.islands[0]
    xs = np.linspace(box[0], box[2], 9, dtype=np.float32)
    ys = np.linspace(box[1], box[3], 9, dtype=np.float32)
    return bool(island.signed_distance(xs, ys).min() > 4 * RIM + 64)


def write_qc_slide(
    path: str | os.PathLike[str],
    width: int = 5120,
    height: int = 3840,
    *,
    mpp: float = 0.499,
    seed: int = 0,
) -> QcSlide:
    """Write the defect slide; the blur, pen and clean areas all lie well inside tissue.

    Layout (fractions of the island's radii around its centre): blurred box on the
    left, clean box top-right, pen stroke bottom-right.
    """
    tile_size = 256
    field = TissueField(width, height, tile_size, load_sample(), seed, islands=1)
    island = field.islands[0]
    cx, cy, rx, ry = island.cx, island.cy, island.rx, island.ry

    def box(fx: float, fy: float, half_x: float, half_y: float) -> Box:
        x, y = cx + fx * rx, cy + fy * ry
        return (
            int(x - half_x * rx),
            int(y - half_y * ry),
            int(x + half_x * rx),
            int(y + half_y * ry),
        )

    blur = box(-0.35, 0.0, 0.25, 0.3)
    clean = box(0.3, -0.35, 0.15, 0.15)
    pen_start = (int(cx + 0.05 * rx), int(cy + 0.45 * ry))
    pen_end = (int(cx + 0.55 * rx), int(cy + 0.15 * ry))
    for area in (blur, clean, (*pen_start, *pen_end)):
        if not _inside_island(field, area):  # pragma: no cover - depends on the seed only
            raise ValueError(f"seed {seed}: a defect would fall outside the tissue")

    pixels = render_tissue(field)
    x0, y0, x1, y1 = blur
    pad = int(4 * BLUR_SIGMA)
    # Blur with a margin, so the box's inside is blurred from real neighbours.
    window = pixels[y0 - pad : y1 + pad, x0 - pad : x1 + pad].astype(np.float32)
    blurred = ndimage.gaussian_filter(window, sigma=(BLUR_SIGMA, BLUR_SIGMA, 0))
    pixels[y0:y1, x0:x1] = np.rint(blurred[pad:-pad, pad:-pad]).astype(np.uint8)

    stroke = _stroke_mask(width, height, pen_start, pen_end, PEN_WIDTH)
    ink = np.array(PEN_INK, np.float32) / 255.0
    inked = pixels[stroke].astype(np.float32) * ink
    pixels[stroke] = np.rint(inked).astype(np.uint8)

    target = write_array_svs(path, pixels, mpp=mpp)
    return QcSlide(target, width, height, mpp, blur, pen_start, pen_end, PEN_WIDTH, clean)


def write_array_svs(
    path: str | os.PathLike[str],
    pixels: RGB,
    *,
    mpp: float | None = 0.499,
    tile_size: int = 256,
    quality: int = 90,
) -> Path:
    """Write ``pixels`` (level 0, RGB) as a tiled JPEG Aperio SVS OpenSlide opens
    (``mpp=None``: without a scale).

    Pages in Aperio's order: level 0, a stripped thumbnail, then 4x-smaller levels (box
    filtered). Only for small slides: the whole array is in memory.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    height, width = pixels.shape[:2]
    sizes = level_sizes(width, height, tile_size)
    head = f"{width}x{height} [0,0 {width}x{height}] ({tile_size}x{tile_size})"
    # No MPP pair at all when ``mpp`` is None: a slide that does not record its scale.
    scale = "" if mpp is None else f"|MPP = {mpp:.4f}"
    pairs = f"AppMag = 20{scale}|Title = slidestore qc slide"
    levels = [pixels]
    for w, h in sizes[1:]:
        previous = levels[-1][: h * LEVEL_STEP, : w * LEVEL_STEP]
        block = previous.reshape(h, LEVEL_STEP, w, LEVEL_STEP, 3)
        sums = block.sum(axis=(1, 3), dtype=np.uint32)
        area = LEVEL_STEP * LEVEL_STEP
        levels.append(((sums + area // 2) // area).astype(np.uint8))
    thumb_w, thumb_h = thumbnail_size(width, height)
    step = max(1, math.ceil(max(width / thumb_w, height / thumb_h)))
    thumb = np.ascontiguousarray(pixels[::step, ::step])
    options = {"photometric": "rgb", "compression": "jpeg", "compressionargs": {"level": quality}}
    with tifffile.TiffWriter(target, bigtiff=False) as tif:
        for index, level in enumerate(levels):
            resized = "" if index == 0 else f" -> {level.shape[1]}x{level.shape[0]}"
            description = f"{LIBRARY} \r\n{head}{resized} JPEG/RGB Q={quality}|{pairs}"
            tif.write(
                level,
                tile=(tile_size, tile_size),
                description=description,
                metadata=None,
                **options,  # type: ignore[arg-type]
            )
            if index == 0:
                thumb_description = f"{LIBRARY} \r\n{width}x{height} -> {thumb.shape[1]}x{thumb.shape[0]} - |{pairs}"
                tif.write(thumb, description=thumb_description, metadata=None, **options)  # type: ignore[arg-type]
    return target

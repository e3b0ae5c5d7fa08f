"""The small pictures beside the pyramid: thumbnail, slide label and macro photo.

The thumbnail is the slide itself, scaled down; the label is a printed sticker (text and
a 2D barcode made from the seed); the macro is the overview camera's view of the whole
glass slide: label at one end, the scanned area (drawn from the thumbnail, at its true
physical size) outlined in green, as Aperio scanners draw it.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from slidestore.synthetic.sample import RGB

LABEL_SIZE: Final = (387, 463)
MACRO_SIZE: Final = (1280, 431)
"""Pixel sizes of CMU-1's label and macro images (width, height)."""

_SLIDE_MM: Final = (75.0, 25.0)
_HOLDER: Final = (28, 28, 30)
_SLIDE_GLASS: Final = (232, 235, 231)
_OUTLINE: Final = (40, 220, 40)


def thumbnail(pixels: RGB, size: tuple[int, int]) -> RGB:
    """``pixels`` resized to ``size`` (width, height) with a Lanczos filter."""
    image = Image.fromarray(pixels)
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(image.convert("RGB"))


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size)
    except (OSError, ImportError):  # Pillow built without FreeType: fixed bitmap font
        return ImageFont.load_default()


def label(seed: int, lines: list[str]) -> RGB:
    """A white sticker with ``lines`` of text above a barcode-like square of modules."""
    width, height = LABEL_SIZE
    image = Image.new("RGB", LABEL_SIZE, (250, 250, 247))
    draw = ImageDraw.Draw(image)
    font = _font(30)
    y = 18
    for line in lines:
        draw.text((20, y), line, fill=(20, 20, 20), font=font)
        y += 38
    # A Data Matrix look-alike: solid L finder, dotted timing edges, seeded modules.
    modules = 16
    cell = min(width - 40, height - y - 20) // modules
    rng = np.random.default_rng(seed)
    grid = rng.random((modules, modules)) < 0.5
    grid[:, 0] = True
    grid[-1, :] = True
    grid[0, :] = np.arange(modules) % 2 == 0
    grid[:, -1] = np.arange(modules) % 2 == 1
    left, top = (width - cell * modules) // 2, y + 10
    for r, c in zip(*np.nonzero(grid), strict=True):
        x0, y0 = left + int(c) * cell, top + int(r) * cell
        draw.rectangle((x0, y0, x0 + cell - 1, y0 + cell - 1), fill=(10, 10, 10))
    return np.asarray(image)


def macro(
    label_pixels: RGB | None,
    overview: RGB,
    slide_size: tuple[int, int],
    mpp: float,
) -> RGB:
    """The whole glass slide from above, scanned area outlined, label at the left end."""
    width, height = MACRO_SIZE
    image = Image.new("RGB", MACRO_SIZE, _HOLDER)
    draw = ImageDraw.Draw(image)
    glass_box = (20, 12, width - 20, height - 12)
    draw.rounded_rectangle(glass_box, radius=14, fill=_SLIDE_GLASS)
    glass_w = glass_box[2] - glass_box[0]
    glass_h = glass_box[3] - glass_box[1]
    label_w = round(glass_w * 0.26)
    if label_pixels is not None:
        sticker = Image.fromarray(label_pixels).rotate(90, expand=True)
        sticker = sticker.resize((label_w - 16, glass_h - 16), Image.Resampling.BILINEAR)
        image.paste(sticker, (glass_box[0] + 8, glass_box[1] + 8))
    # The scanned area at its physical size (the slide is 75 x 25 mm), shrunk to fit.
    px_per_mm = glass_w / _SLIDE_MM[0]
    area_w = slide_size[0] * mpp / 1000 * px_per_mm
    area_h = slide_size[1] * mpp / 1000 * px_per_mm
    room_w, room_h = glass_w - label_w - 24, glass_h - 16
    fit = min(1.0, room_w / area_w, room_h / area_h)
    area = (max(2, round(area_w * fit)), max(2, round(area_h * fit)))
    x0 = glass_box[0] + label_w + 12 + (room_w - area[0]) // 2
    y0 = glass_box[1] + 8 + (room_h - area[1]) // 2
    scan = Image.fromarray(overview).resize(area, Image.Resampling.LANCZOS)
    image.paste(scan, (x0, y0))
    draw.rectangle((x0 - 2, y0 - 2, x0 + area[0] + 1, y0 + area[1] + 1), outline=_OUTLINE, width=2)
    return np.asarray(image)

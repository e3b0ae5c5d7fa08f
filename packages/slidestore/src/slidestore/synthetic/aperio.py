"""What Aperio puts in an SVS besides pixels: level sizes and ImageDescription strings.

Geometry follows real ScanScope files: each pyramid level is the previous one divided by
4, rounded down (CMU-1: 46000x32914 → 11500x8228 → 2875x2057); the thumbnail fits in
1024x768, rounded down and never enlarged (CMU-1-Small-Region: 2220x2967 → 574x768).

OpenSlide recognizes a file as Aperio when the first IFD's ImageDescription starts with
"Aperio"; the ``key = value`` pairs after the first ``|`` become ``aperio.*`` properties,
``MPP`` gives ``openslide.mpp-x``/``-y`` and ``AppMag`` ``openslide.objective-power``.
Associated images are named by the first word of their description's second line.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

LEVEL_STEP: Final = 4
THUMBNAIL_BOX: Final = (1024, 768)
LIBRARY: Final = "Aperio Image Library v12.0.15"


def level_sizes(
    width: int, height: int, tile_size: int, levels: int | None = None
) -> list[tuple[int, int]]:
    """Level dimensions, level 0 first.

    With ``levels=None`` levels are added until one fits in about two tiles each way
    (its longer side at most ``2 * tile_size``), as scanners stop once a level is small.
    """
    if width < 1 or height < 1:
        raise ValueError(f"slide size must be positive, got {width}x{height}")
    sizes = [(width, height)]
    while True:
        w, h = sizes[-1]
        if levels is None and max(w, h) <= 2 * tile_size:
            break
        if levels is not None and len(sizes) == levels:
            break
        if w < LEVEL_STEP or h < LEVEL_STEP:
            if levels is None:
                break
            raise ValueError(f"a {width}x{height} slide cannot have {levels} levels")
        sizes.append((w // LEVEL_STEP, h // LEVEL_STEP))
    return sizes


def thumbnail_size(width: int, height: int) -> tuple[int, int]:
    """The thumbnail's size: fit in 1024x768, rounded down, never enlarged."""
    scale = min(THUMBNAIL_BOX[0] / width, THUMBNAIL_BOX[1] / height, 1.0)
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanInfo:
    """The scan metadata written into every level's description."""

    width: int
    height: int
    tile_size: int
    quality: int
    mpp: float
    objective_power: int
    scanned_at: datetime
    seed: int

    def _pairs(self) -> str:
        # Everything derived from the seed so that equal parameters give equal bytes.
        user = uuid.UUID(int=(self.seed * 0x9E3779B97F4A7C15 + 0x5DEECE66D) % 2**128)
        pairs = {
            "AppMag": str(self.objective_power),
            "StripeWidth": "2040",
            "ScanScope ID": f"SS{1000 + self.seed % 9000}",
            "Filename": f"synthetic-{self.seed}",
            "Date": self.scanned_at.strftime("%m/%d/%y"),
            "Time": self.scanned_at.strftime("%H:%M:%S"),
            "Time Zone": "GMT+0000",
            "User": str(user),
            "MPP": f"{self.mpp:.4f}",
            "Left": "25.691574",
            "Top": "23.449873",
            "LineCameraSkew": "-0.000424",
            "LineAreaXOffset": "0.019265",
            "LineAreaYOffset": "-0.000313",
            "Focus Offset": "0.000000",
            "ImageID": str(100000 + self.seed % 900000),
            "OriginalWidth": str(self.width),
            "OriginalHeight": str(self.height),
            "Filtered": "5",
            "Title": "slidestore synthetic slide",
        }
        return "|".join(f"{key} = {value}" for key, value in pairs.items())

    def _geometry(self) -> str:
        w, h, t = self.width, self.height, self.tile_size
        return f"{w}x{h} [0,0 {w}x{h}] ({t}x{t})"

    def level_description(self, level_width: int, level_height: int) -> str:
        """Level 0: ``WxH [0,0 WxH] (240x240) JPEG/RGB Q=30|...``; lower levels add ``-> wxh``."""
        resized = ""
        if (level_width, level_height) != (self.width, self.height):
            resized = f" -> {level_width}x{level_height}"
        return (
            f"{LIBRARY} \r\n{self._geometry()}{resized} JPEG/RGB Q={self.quality}|{self._pairs()}"
        )

    def thumbnail_description(self, thumb_width: int, thumb_height: int) -> str:
        return (
            f"{LIBRARY} \r\n{self.width}x{self.height} -> {thumb_width}x{thumb_height} - "
            f"|{self._pairs()}"
        )


def associated_description(name: str, width: int, height: int) -> str:
    """``label``/``macro`` pages: OpenSlide takes the name from the second line."""
    return f"{LIBRARY}\r\n{name} {width}x{height}"

"""A second reader: tiffslide (tifffile + imagecodecs), pure Python, no OpenSlide.

Registered below OpenSlide, so it opens only what OpenSlide does not recognize, or when
asked: ``open_slide(path, reader="tiffslide")``. Native JPEG tiles are passed through by
the shared core (tifffile's tile offsets + JPEGTables), so ``raw_tile`` is byte for byte
the same as with OpenSlide; decoded pixels come from imagecodecs' libjpeg-turbo.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, Final

import numpy as np
import tifffile
import tiffslide
from PIL import Image

from slidestore import imaging
from slidestore.errors import SlideClosed, SlideReadError, SlidestoreError, UnsupportedFormat
from slidestore.geometry import Region
from slidestore.imaging import RGBArray
from slidestore.metadata import AssociatedImageInfo
from slidestore.reading.slide import Opened, Slide, level_infos

_PREFIX: Final = "tiffslide."


class _FloorSlide(tiffslide.TiffSlide):
    """tiffslide truncates ``x / downsample`` towards zero; the core floors (as OpenSlide)."""

    def _read_region_loc_transform(self, location: tuple[int, int], level: int) -> tuple[int, int]:
        downsample = self.level_downsamples[level]
        return math.floor(location[0] / downsample), math.floor(location[1] / downsample)


def _decodable(tif: tifffile.TiffFile) -> bool:
    """Every level of the main series is tiled with a codec this installation decodes."""
    if not tif.series:
        return False
    for level in tif.series[0].levels:
        page = level.keyframe
        if not page.is_tiled or page.compression not in tifffile.TIFF.DECOMPRESSORS:
            return False
    return True


def _associated_series(handle: tiffslide.TiffSlide) -> dict[str, tifffile.TiffPageSeries]:
    """The series after the pyramid, by lower-case name, as tiffslide names them."""
    first = int(handle.properties["tiffslide.series-index"]) + 1
    return {s.name.lower(): s for s in handle.ts_tifffile.series[first:]}


def _openslide_properties(properties: dict[str, Any]) -> dict[str, str]:
    """tiffslide's properties under OpenSlide's names (what ``normalize`` reads)."""
    out: dict[str, str] = {}
    for key, value in properties.items():
        if value is None:
            continue
        name = f"openslide.{key[len(_PREFIX) :]}" if key.startswith(_PREFIX) else key
        out[name] = str(value)
    # tiffslide names no vendor for a plain tiled TIFF; OpenSlide calls it generic-tiff.
    out.setdefault("openslide.vendor", "generic-tiff")
    return out


class TiffSlideSlide(Slide):
    """A slide read with tiffslide (TIFF-based formats: Aperio SVS, generic tiled TIFF, …)."""

    reader: ClassVar[str] = "tiffslide"

    @classmethod
    def supported(cls, path: Path) -> bool:
        try:
            with tifffile.TiffFile(path) as tif:
                return _decodable(tif)
        except (tifffile.TiffFileError, OSError, ValueError):
            return False

    def _open(self) -> Opened:
        try:
            handle = _FloorSlide(self.path)
        except (tifffile.TiffFileError, OSError, ValueError) as exc:
            raise UnsupportedFormat(f"{self.path}: tiffslide cannot open it: {exc}") from exc
        try:
            if not _decodable(handle.ts_tifffile):
                raise UnsupportedFormat(
                    f"{self.path}: tiffslide cannot decode it (untiled, or a compression "
                    "this installation has no codec for)"
                )
            props = handle.properties
            levels = level_infos(
                handle.level_dimensions, handle.level_downsamples, props, "tiffslide"
            )
            self._associated = _associated_series(handle)
            associated = tuple(
                AssociatedImageInfo(name=name, width=series.shape[1], height=series.shape[0])
                for name, series in sorted(self._associated.items())
            )
        except BaseException:
            handle.close()
            raise
        self._handle: _FloorSlide | None = handle
        return Opened(
            properties=_openslide_properties(dict(props)), levels=levels, associated=associated
        )

    def _close_reader(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _live(self) -> _FloorSlide:
        handle = self._handle
        if handle is None:
            raise SlideClosed(f"{self.path}: slide is closed")
        return handle

    def _read_pixels(self, x: int, y: int, level: int, width: int, height: int) -> RGBArray:
        handle = self._live()
        info = self.levels[level]
        lx, ly = math.floor(x / info.downsample), math.floor(y / info.downsample)
        wanted = Region(x=lx, y=ly, width=width, height=height)
        inside = wanted.intersection(Region(x=0, y=0, width=info.width, height=info.height))
        out = imaging.fill(height, width, self.background)
        if inside is None:
            return out
        # Where the region starts left of (above) the image, ``inside`` starts at 0.
        location = (max(x, 0), max(y, 0))
        try:
            pixels = np.asarray(
                handle.read_region(
                    location, level, (inside.width, inside.height), as_array=True, padding=False
                )
            )
        except SlidestoreError:
            raise
        except Exception as exc:  # imagecodecs, zarr and tifffile raise their own types
            raise SlideReadError(
                f"{self.path}: reading region {width}x{height} at ({x}, {y}) level {level} "
                f"failed: {exc}"
            ) from exc
        pixels = pixels[: inside.height, : inside.width, :3].astype(np.uint8, copy=False)
        out[
            inside.y - ly : inside.y - ly + pixels.shape[0],
            inside.x - lx : inside.x - lx + pixels.shape[1],
        ] = pixels
        return out

    def _read_associated(self, name: str) -> RGBArray:
        self._live()
        try:
            # Decoded on each call, not kept (tiffslide's own mapping keeps every image).
            pixels = np.asarray(self._associated[name].asarray())
        except Exception as exc:  # imagecodecs and tifffile raise their own types
            raise SlideReadError(
                f"{self.path}: reading associated image {name!r} failed: {exc}"
            ) from exc
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[..., None], 3, axis=2)
        return imaging.flatten_rgba(Image.fromarray(pixels.astype(np.uint8)), self.background)

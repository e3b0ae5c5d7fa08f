"""The :class:`Slide`: one open whole-slide image, whichever library reads it.

The reader-independent part lives here: argument and bounds checks, the pixel budget,
native JPEG tiles located with tifffile and read with ``os.pread`` (passthrough, and
decoded by us), frame-header checks before any decoder sees a tile, thumbnails and the
pyramid convenience. A reader (``openslide_reader.py``, ``tiffslide_reader.py``) adds
only how to open the file and decode a region or an associated image; the registry
(``registry.py``) picks one per file.
"""

from __future__ import annotations

import math
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image

from slidestore import imaging
from slidestore.errors import (
    AssociatedImageNotFound,
    DecompressionBomb,
    InvalidRequest,
    OutOfBounds,
    PassthroughUnavailable,
    RegionTooLarge,
    ReplicaCorrupt,
    SlideClosed,
    SlideNotFound,
    SlideReadError,
    UnsupportedFormat,
)
from slidestore.geometry import LevelInfo, Region
from slidestore.imaging import RGBArray
from slidestore.metadata import AssociatedImageInfo, SlideMetadata, normalize
from slidestore.reading.tiff_tiles import TiledPage, level_pages, locate_tiles, tiled_pages

if TYPE_CHECKING:
    from slidestore.pyramid import Pyramid, PyramidOptions

DEFAULT_MAX_REGION_PIXELS: Final = int(os.environ.get("SLIDESTORE_MAX_REGION_PIXELS", 64 * 2**20))
"""Largest region ``read_region`` returns (pixels); 64 Mpx is 192 MiB of RGB."""

FALLBACK_TILE: Final = 256
"""Tile size of a level whose file records none (a stripped TIFF level)."""


def level_infos(
    dimensions: Sequence[tuple[int, int]],
    downsamples: Sequence[float],
    properties: Mapping[str, object],
    prefix: str,
) -> tuple[LevelInfo, ...]:
    """Levels from a library's sizes, downsamples and ``{prefix}.level[i].tile-width`` /
    ``tile-height`` properties (the names OpenSlide and tiffslide share)."""

    def tile(i: int, side: str) -> int:
        return int(str(properties.get(f"{prefix}.level[{i}].tile-{side}", FALLBACK_TILE)))

    return tuple(
        LevelInfo(
            index=i,
            width=w,
            height=h,
            downsample=float(downsamples[i]),
            tile_width=tile(i, "width"),
            tile_height=tile(i, "height"),
        )
        for i, (w, h) in enumerate(dimensions)
    )


class SourceCheck(Protocol):
    """How a slide holds the file's bytes to checksums before it uses them (a node's
    :class:`slidestore.blobs.checked.CheckedFile`); each raises on a mismatch."""

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``, checked."""
        ...

    def verify(self, start: int, end: int) -> None:
        """Check ``[start, end)`` before a library reads it (may remember it passed)."""
        ...

    def verify_outside(self, starts: npt.ArrayLike, ends: npt.ArrayLike) -> None:
        """Check every part of the file outside these ranges (the tile data)."""
        ...

    def verify_all(self) -> None: ...

    def refresh(self) -> None:
        """Called before every library read: re-check what was checked too long ago."""
        ...


def verified_layout(path: Path, check: SourceCheck) -> list[TiledPage] | None:
    """The file's tiled pages, after every byte outside their tile data — the header,
    the directories and their tag values, strips, associated images — passed ``check``:
    what a reader parses when it opens the file is checked before it does. A file
    tifffile cannot map (not a TIFF) is checked whole (streamed), once."""
    pages = tiled_pages(str(path))
    if pages is None:
        check.verify_all()
        return None
    starts, ends = _data_ranges(pages)
    check.verify_outside(starts, ends)
    return pages


def _data_ranges(
    pages: Sequence[TiledPage | None],
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    present = [p for p in pages if p is not None]
    if not present:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    starts = np.concatenate([p.offsets for p in present])
    return starts, starts + np.concatenate([p.bytecounts for p in present])


@dataclass(frozen=True)
class Opened:
    """What a reader found when opening a file."""

    properties: dict[str, str]
    """OpenSlide-style properties (``openslide.vendor``, ``openslide.mpp-x``, vendor keys):
    the input of :func:`slidestore.metadata.normalize`, whatever library read them."""
    levels: tuple[LevelInfo, ...]
    associated: tuple[AssociatedImageInfo, ...]


class Slide(ABC):
    """A whole-slide image opened for reading (it implements
    :class:`~slidestore.source.SlideSource`).

    Open one with :func:`slidestore.open_slide`. Safe to share between threads: native
    tiles are read with ``os.pread``, readers make their decoding thread-safe. A read
    that fails (corrupt tile data) raises :class:`SlideReadError`; other threads keep
    reading.

    ``read_region`` fills areas outside the image (and transparent areas) with the
    slide's background colour: ``openslide.background-color`` when the file records one,
    else white.
    """

    reader: ClassVar[str]
    """The reader's name in the registry (``open_slide(path, reader=...)``)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_region_pixels: int | None = None,
        check: SourceCheck | None = None,
        layout: list[TiledPage] | None = None,
    ):
        """``check``: hold every byte the slide reads to checksums (see
        :class:`SourceCheck`); ``layout``: the file's tiled pages when the caller already
        has them from :func:`verified_layout`."""
        self.path = Path(path)
        if not self.path.exists():
            raise SlideNotFound(f"{self.path}: no such file")
        if not self.path.is_file():
            raise UnsupportedFormat(f"{self.path}: not a regular file")
        self.max_region_pixels = max_region_pixels or DEFAULT_MAX_REGION_PIXELS
        self._lock = threading.Lock()
        self._check = check
        if layout is None:
            layout = (
                tiled_pages(str(self.path)) if check is None else verified_layout(self.path, check)
            )
        opened = self._open()
        self.levels: tuple[LevelInfo, ...] = opened.levels
        self.metadata: SlideMetadata = normalize(opened.properties, self.levels, opened.associated)
        self.background = self.metadata.background_color
        self._pages = level_pages(layout or (), self.levels)
        read_by_levels = {id(page) for page in self._pages if page is not None}
        if check is not None and layout is not None and len(layout) > len(read_by_levels):
            # A tiled page no level reads (an associated image): no region read checks
            # its tiles, so they are checked now with the rest.
            check.verify_outside(*_data_ranges(self._pages))
        self._tiles = locate_tiles(str(self.path), self.levels, self._pages)
        self._fd: int | None = os.open(self.path, os.O_RDONLY) if any(self._tiles) else None
        self._pyramid: Pyramid | None = None

    # -- what a reader provides ----------------------------------------------------------

    @classmethod
    @abstractmethod
    def supported(cls, path: Path) -> bool:
        """Whether this reader recognizes the file (cheap: reads headers, decodes nothing)."""

    @abstractmethod
    def _open(self) -> Opened:
        """Open the file; raise :class:`UnsupportedFormat` when it cannot be read."""

    @abstractmethod
    def _read_pixels(self, x: int, y: int, level: int, width: int, height: int) -> RGBArray:
        """The region as ``read_region`` defines it, arguments already checked; raise
        :class:`SlideReadError` on corrupt data and :class:`SlideClosed` once closed."""

    @abstractmethod
    def _read_associated(self, name: str) -> RGBArray:
        """An associated image the file holds, flattened onto the background."""

    @abstractmethod
    def _close_reader(self) -> None:
        """Release the library's handles (under the slide's lock; again is a no-op)."""

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._close_reader()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        named = "" if self.reader == "openslide" else f", reader={self.reader!r}"
        return f"Slide({str(self.path)!r}, vendor={self.metadata.vendor!r}{named})"

    # -- geometry --------------------------------------------------------------------

    @property
    def dimensions(self) -> tuple[int, int]:
        return (self.levels[0].width, self.levels[0].height)

    @property
    def level_count(self) -> int:
        return len(self.levels)

    def level(self, index: int) -> LevelInfo:
        if not isinstance(index, int) or not 0 <= index < len(self.levels):
            raise OutOfBounds(
                f"{self.path}: level {index} does not exist (levels 0..{len(self.levels) - 1})"
            )
        return self.levels[index]

    def _check_tile(self, level: int, col: int, row: int) -> LevelInfo:
        info = self.level(level)
        if not (0 <= col < info.columns and 0 <= row < info.rows):
            raise OutOfBounds(
                f"{self.path}: tile ({col}, {row}) is outside level {level}'s "
                f"{info.columns}x{info.rows} tile grid"
            )
        return info

    # -- pixels ----------------------------------------------------------------------

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> RGBArray:
        """Pixels of ``size`` (w, h) at ``level``, top-left at ``location`` in level-0 pixels.

        A region that only partly overlaps the slide is filled with the background colour
        outside it; a region entirely outside raises :class:`OutOfBounds`.
        """
        info = self.level(level)
        x, y = (int(v) for v in location)
        w, h = (int(v) for v in size)
        if w <= 0 or h <= 0:
            raise InvalidRequest(f"{self.path}: region size must be positive, got {w}x{h}")
        if w * h > self.max_region_pixels:
            raise RegionTooLarge(
                f"{self.path}: region {w}x{h} exceeds the limit of {self.max_region_pixels} pixels"
            )
        lx, ly = math.floor(x / info.downsample), math.floor(y / info.downsample)
        if (
            Region(x=lx, y=ly, width=w, height=h).intersection(
                Region(x=0, y=0, width=info.width, height=info.height)
            )
            is None
        ):
            raise OutOfBounds(
                f"{self.path}: region {w}x{h} at ({x}, {y}) lies outside level {level} "
                f"({info.width}x{info.height})"
            )
        at = (x / info.downsample, y / info.downsample)
        if self._check is not None:
            self._check.refresh()  # (a level not stored as tiles has no per-read check)
        self._verify_tiles(info, *at, w, h)
        self._check_frames(info, *at, w, h)
        return self._read_pixels(x, y, level, w, h)

    @staticmethod
    def _touched(info: LevelInfo, x: float, y: float, w: int, h: int) -> tuple[range, range]:
        """Columns and rows of the stored tiles the reader decodes for the region at
        (``x``, ``y``) (level pixels). On a downsampled level a pixel of slack on each
        side covers OpenSlide's own rounding of the position."""
        slack = 0 if info.downsample == 1 else 1
        tw, th = info.tile_width, info.tile_height
        cols = range(
            max(0, math.floor((x - slack) / tw)),
            min(info.columns, math.floor((x + w - 1 + slack) / tw) + 1),
        )
        rows = range(
            max(0, math.floor((y - slack) / th)),
            min(info.rows, math.floor((y + h - 1 + slack) / th) + 1),
        )
        return cols, rows

    def _verify_tiles(self, info: LevelInfo, x: float, y: float, w: int, h: int) -> None:
        """Hold the stored tiles the reader will decode for the region to the checksums
        (a level stored otherwise was checked whole when the slide was opened)."""
        check, page = self._check, self._pages[info.index]
        if check is None or page is None:
            return
        cols, rows = self._touched(info, x, y, w, h)
        for row in rows:
            for col in cols:
                offset, length = page.extent(col, row)
                if length:
                    check.verify(offset, offset + length)

    def _check_frames(self, info: LevelInfo, x: float, y: float, w: int, h: int) -> None:
        """Check the frame header of every stored tile OpenSlide will decode for the
        region at (``x``, ``y``) (level pixels) before it is asked: OpenSlide allocates
        what a tile's header declares."""
        tiles = self._tiles[info.index]
        fd = self._fd
        if tiles is None or fd is None:
            return
        cols, rows = self._touched(info, x, y, w, h)
        for row in rows:
            for col in cols:
                tiles.check(fd, col, row)

    def can_passthrough(self, level: int) -> bool:
        """Whether ``raw_tile`` works on this level (tiles stored as JPEG)."""
        return self._tiles[self.level(level).index] is not None

    def raw_tile(self, level: int, col: int, row: int) -> bytes:
        """The stored tile as a standalone JPEG, without decoding or re-encoding.

        Edge tiles come at full tile size, as stored (the padding is whatever the scanner
        wrote). Raises :class:`PassthroughUnavailable` when the level's tiles are not JPEG
        or the file stores no data for this tile.
        """
        self._check_tile(level, col, row)
        tiles = self._tiles[level]
        if tiles is None:
            raise PassthroughUnavailable(
                f"{self.path}: level {level} tiles are not stored as JPEG "
                f"(vendor {self.metadata.vendor}); they can only be transcoded"
            )
        fd = self._fd
        if fd is None:
            raise SlideClosed(f"{self.path}: slide is closed")
        try:
            data = tiles.read(fd, col, row)
        except OSError as exc:
            raise SlideReadError(f"{self.path}: tile ({col}, {row}) level {level}: {exc}") from exc
        if data is None:
            raise PassthroughUnavailable(
                f"{self.path}: tile ({col}, {row}) of level {level} has no stored data"
            )
        return data

    def tile_extent(self, level: int, col: int, row: int) -> tuple[int, int] | None:
        """Where a native tile's stored bytes lie in the file, ``(offset, length)``; None
        when its tiles are not stored as JPEG or the file holds no data for it (a server
        checks exactly these bytes before passing the tile through)."""
        self._check_tile(level, col, row)
        tiles = self._tiles[level]
        if tiles is None:
            return None
        index = row * tiles.columns + col
        count = int(tiles.bytecounts[index])
        return (int(tiles.offsets[index]), count) if count else None

    def read_tile(self, level: int, col: int, row: int) -> RGBArray:
        """A native tile decoded, always ``(tile_height, tile_width, 3)``.

        The part of an edge tile beyond the image is background colour, exactly as
        ``read_region`` would return it.
        """
        info = self._check_tile(level, col, row)
        valid = info.tile_region(col, row)
        tiles = self._tiles[level]
        if tiles is not None and self._fd is not None:
            checked = None if self._check is None else self._check.read
            try:
                data = tiles.read(self._fd, col, row, checked)
                if data is not None:
                    pixels = imaging.decode(data)
            except ReplicaCorrupt:
                raise  # the copy is bad, not the slide: not a read error of the file
            except (OSError, imaging.DecodeError) as exc:
                raise SlideReadError(
                    f"{self.path}: decoding tile ({col}, {row}) of level {level} failed: {exc}"
                ) from exc
            if data is not None:
                if pixels.shape[:2] != (info.tile_height, info.tile_width):
                    raise SlideReadError(
                        f"{self.path}: tile ({col}, {row}) of level {level} decodes to "
                        f"{pixels.shape[1]}x{pixels.shape[0]}, expected "
                        f"{info.tile_width}x{info.tile_height}"
                    )
                if valid.width == info.tile_width and valid.height == info.tile_height:
                    return pixels
                out = imaging.fill(info.tile_height, info.tile_width, self.background)
                out[: valid.height, : valid.width] = pixels[: valid.height, : valid.width]
                return out
        region = self.read_region(
            (round(valid.x * info.downsample), round(valid.y * info.downsample)),
            level,
            (valid.width, valid.height),
        )
        if region.shape[:2] == (info.tile_height, info.tile_width):
            return region
        out = imaging.fill(info.tile_height, info.tile_width, self.background)
        out[: valid.height, : valid.width] = region
        return out

    # -- associated images -----------------------------------------------------------

    @property
    def associated_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.metadata.associated_images)

    def associated_image(self, name: str) -> RGBArray:
        """``label``, ``macro``, ``thumbnail`` or whatever else the file holds."""
        if name not in self.associated_names:
            raise AssociatedImageNotFound(
                f"{self.path}: no associated image {name!r} "
                f"(has: {', '.join(self.associated_names) or 'none'})"
            )
        info = next(a for a in self.metadata.associated_images if a.name == name)
        if info.width * info.height > self.max_region_pixels:
            raise DecompressionBomb(
                f"{self.path}: associated image {name!r} declares {info.width}x{info.height} "
                f"pixels, above the limit of {self.max_region_pixels}; refused before decoding"
            )
        if self._check is not None:
            self._check.refresh()
        return self._read_associated(name)

    def thumbnail(self, max_size: tuple[int, int] | int = 512) -> RGBArray:
        """The whole slide scaled to fit ``max_size`` (aspect ratio kept)."""
        bounds = (max_size, max_size) if isinstance(max_size, int) else max_size
        if min(bounds) <= 0:
            raise InvalidRequest(f"{self.path}: thumbnail size must be positive, got {bounds}")
        w, h = self.dimensions
        scale = min(bounds[0] / w, bounds[1] / h)
        target = (max(1, round(w * scale)), max(1, round(h * scale)))
        # Read from the coarsest level that still has at least the target resolution.
        level = self.levels[0]
        for info in self.levels:
            if info.width >= target[0] and info.height >= target[1]:
                level = info
        if level.width * level.height > self.max_region_pixels:
            raise RegionTooLarge(
                f"{self.path}: no level small enough for a {target[0]}x{target[1]} thumbnail"
            )
        pixels = self.read_region((0, 0), level.index, (level.width, level.height))
        image = Image.fromarray(pixels).resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
        return np.array(image)

    # -- views -----------------------------------------------------------------------

    def open_pyramid(self, options: PyramidOptions | None = None) -> Pyramid:
        """A new cached pyramid view of this slide with its own cache settings."""
        from slidestore.pyramid import open_pyramid

        return open_pyramid(self, options)

    @property
    def pyramid(self) -> Pyramid:
        """The slide's pyramid with default options (created on first use, then shared).

        ``slide.pyramid.group()`` is the read-only zarr v3 group (OME-Zarr 0.5 multiscales).
        """
        if self._pyramid is None:
            pyramid = self.open_pyramid()
            with self._lock:  # two first users race: keep one, so they share one cache
                if self._pyramid is None:
                    self._pyramid = pyramid
        return self._pyramid

    def __getstate__(self) -> dict[str, Any]:
        # Handles and file descriptors cannot cross processes; reopen from the path.
        return {"path": str(self.path), "max_region_pixels": self.max_region_pixels}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], max_region_pixels=state["max_region_pixels"])  # type: ignore[misc]

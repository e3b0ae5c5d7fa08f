"""The :class:`Pyramid`: a slide as cached power-of-two levels of native-sized tiles."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from slidestore import imaging
from slidestore.cache import LRUCache
from slidestore.errors import InvalidRequest, OutOfBounds, RegionTooLarge, SlideReadError
from slidestore.geometry import Region
from slidestore.imaging import RGBArray
from slidestore.pyramid import ngff
from slidestore.pyramid.derive import derive_tile
from slidestore.pyramid.levels import PyramidLevel, plan_levels
from slidestore.pyramid.options import PyramidOptions
from slidestore.pyramid.persistent import PersistentTileCache, slide_fingerprint
from slidestore.pyramid.store import PyramidStore, index

if TYPE_CHECKING:
    from slidestore.source import SlideSource

TileKey = tuple[int, int, int, int]
"""(pyramid token, level, col, row): the token keeps pyramids apart in a shared cache."""

_tokens = itertools.count()


class Pyramid:
    """Levels ``0..K`` of a slide, level ``k`` at nominal downsample ``2**k``.

    Tiles are the slide's native tile size on every level, decoded ``(h, w, 3)`` uint8 and
    kept in a byte-bounded LRU cache; tiles returned are read-only views of cache entries.
    Thread-safe. ``store`` presents the same tiles as a read-only zarr v3 store with
    OME-Zarr 0.5 metadata, one array per level, one chunk per tile.
    """

    def __init__(
        self,
        slide: SlideSource,
        options: PyramidOptions | None = None,
        *,
        cache: LRUCache[TileKey, RGBArray] | None = None,
    ) -> None:
        self.slide = slide
        self.options = options if options is not None else PyramidOptions()
        self.levels: tuple[PyramidLevel, ...] = plan_levels(slide)
        self.cache: LRUCache[TileKey, RGBArray] = (
            cache if cache is not None else LRUCache(self.options.cache_bytes)
        )
        self.persistent: PersistentTileCache | None = None
        if self.options.persistent_cache is not None:
            self.persistent = PersistentTileCache(
                self.options.persistent_cache, slide_fingerprint(slide)
            )
        self._token = next(_tokens)
        self._documents = ngff.documents(slide.path.stem, slide.metadata, self.levels)
        self.metadata_keys: frozenset[str] = frozenset(self._documents)
        self._store = PyramidStore(self)

    def __repr__(self) -> str:
        return f"Pyramid({self.slide!r}, levels={len(self.levels)})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Caches hold locks; a copy in another process (dask workers) starts empty.
        return (Pyramid, (self.slide, self.options))

    # -- metrics -----------------------------------------------------------------------

    # Counters of the tile cache (shared with other pyramids when one was passed in).

    @property
    def hits(self) -> int:
        return self.cache.hits

    @property
    def misses(self) -> int:
        return self.cache.misses

    # -- tiles -------------------------------------------------------------------------

    def level(self, index: int) -> PyramidLevel:
        if not isinstance(index, int) or not 0 <= index < len(self.levels):
            raise OutOfBounds(
                f"{self.slide.path}: pyramid level {index} does not exist "
                f"(levels 0..{len(self.levels) - 1})"
            )
        return self.levels[index]

    def tile(self, level: int, col: int, row: int) -> RGBArray:
        """Tile (col, row) of ``level``: ``(tile_h, tile_w, 3)``, background beyond the edge."""
        info = self.level(level)
        if not (0 <= col < info.columns and 0 <= row < info.rows):
            raise OutOfBounds(
                f"{self.slide.path}: tile ({col}, {row}) is outside pyramid level {level}'s "
                f"{info.columns}x{info.rows} tile grid"
            )
        key: TileKey = (self._token, level, col, row)
        return self.cache.get_or_compute(key, lambda: self._load(info, col, row))

    def _load(self, info: PyramidLevel, col: int, row: int) -> RGBArray:
        if info.native_level is not None:
            tile = self.slide.read_tile(info.native_level, col, row)
            if tile.shape != (info.tile_height, info.tile_width, 3):
                raise SlideReadError(
                    f"{self.slide.path}: level {info.native_level} tile ({col}, {row}) has "
                    f"shape {tile.shape}, expected {(info.tile_height, info.tile_width, 3)}"
                )
        else:
            shape = (info.tile_height, info.tile_width)
            found = self.persistent.get(info.index, col, row, shape) if self.persistent else None
            tile = found if found is not None else self._derive(info, col, row)
            if found is None and self.persistent is not None:
                self.persistent.put(info.index, col, row, tile)
        # Cache entries are shared by every caller: make accidental writes fail loudly.
        tile.flags.writeable = False
        return tile

    def _derive(self, info: PyramidLevel, col: int, row: int) -> RGBArray:
        finer = self.levels[info.index - 1]
        tiles = [
            [
                self.tile(finer.index, 2 * col + dx, 2 * row + dy)
                if 2 * col + dx < finer.columns and 2 * row + dy < finer.rows
                else None
                for dx in (0, 1)
            ]
            for dy in (0, 1)
        ]
        return derive_tile(
            tiles,
            valid_width=min(2 * info.tile_width, finer.width - 2 * col * info.tile_width),
            valid_height=min(2 * info.tile_height, finer.height - 2 * row * info.tile_height),
            tile_width=info.tile_width,
            tile_height=info.tile_height,
            background=self.slide.background,
        )

    # -- regions -----------------------------------------------------------------------

    def read(self, level: int, region: Region) -> RGBArray:
        """``region`` of ``level`` (in that level's pixels) as ``(h, w, 3)``.

        Parts outside the level are background; a region entirely outside raises
        :class:`OutOfBounds`, one above the slide's pixel budget :class:`RegionTooLarge`.
        """
        info = self.level(level)
        if region.width <= 0 or region.height <= 0:
            raise InvalidRequest(
                f"region size must be positive, got {region.width}x{region.height}"
            )
        if region.width * region.height > self.slide.max_region_pixels:
            raise RegionTooLarge(
                f"region {region.width}x{region.height} exceeds the limit of "
                f"{self.slide.max_region_pixels} pixels"
            )
        inside = region.intersection(Region(x=0, y=0, width=info.width, height=info.height))
        if inside is None:
            raise OutOfBounds(
                f"{self.slide.path}: region {region.width}x{region.height} at "
                f"({region.x}, {region.y}) lies outside pyramid level {level} "
                f"({info.width}x{info.height})"
            )
        out = imaging.fill(region.height, region.width, self.slide.background)
        tw, th = info.tile_width, info.tile_height
        for row in range(inside.y // th, (inside.bottom - 1) // th + 1):
            for col in range(inside.x // tw, (inside.right - 1) // tw + 1):
                part = inside.intersection(info.tile_region(col, row))
                if part is None:  # cannot happen for tiles in this range; narrows the type
                    continue
                tile = self.tile(level, col, row)
                out[
                    part.y - region.y : part.bottom - region.y,
                    part.x - region.x : part.right - region.x,
                ] = tile[
                    part.y - row * th : part.bottom - row * th,
                    part.x - col * tw : part.right - col * tw,
                ]
        return out

    # -- zarr --------------------------------------------------------------------------

    def get_key(self, key: str) -> bytes | None:
        """The bytes of a zarr key (``zarr.json``, ``{level}/zarr.json``,
        ``{level}/c/0/{row}/{col}``) or ``None`` when there is no such key.

        Synchronous and blocking (a chunk may need decoding): call it from a worker thread
        in async code. Raises :class:`SlideReadError` when the slide's data is corrupt.
        """
        document = self._documents.get(key)
        if document is not None:
            return document
        address = self.chunk_address(key)
        if address is None:
            return None
        level, col, row = address
        # zarr's chunk is (c, y, x): planar channels, C order.
        return np.ascontiguousarray(self.tile(level, col, row).transpose(2, 0, 1)).tobytes()

    def chunk_address(self, key: str) -> tuple[int, int, int] | None:
        """(level, col, row) of a chunk key that exists, else ``None``."""
        parts = key.split("/")
        if len(parts) != 5 or parts[1:3] != ["c", "0"]:
            return None
        level, row, col = (index(p) for p in (parts[0], parts[3], parts[4]))
        if level is None or row is None or col is None or level >= len(self.levels):
            return None
        info = self.levels[level]
        if col >= info.columns or row >= info.rows:
            return None
        return level, col, row

    @property
    def store(self) -> PyramidStore:
        """A read-only zarr v3 store over this pyramid."""
        return self._store

    def group(self) -> zarr.Group:
        """The pyramid as a zarr group (``zarr.open_group(self.store, mode="r")``)."""
        return zarr.open_group(self.store, mode="r")


def open_pyramid(
    slide: SlideSource,
    options: PyramidOptions | None = None,
    *,
    cache: LRUCache[TileKey, RGBArray] | None = None,
) -> Pyramid:
    """A new pyramid view of ``slide``; pass ``cache`` to share one byte budget between slides."""
    return Pyramid(slide, options, cache=cache)


def shared_pyramid(source: SlideSource | Pyramid) -> Pyramid:
    """``source`` itself when it is a pyramid, else the slide's shared default pyramid when
    it keeps one (:attr:`slidestore.Slide.pyramid`), else a new one."""
    if isinstance(source, Pyramid):
        return source
    shared = getattr(source, "pyramid", None)
    return shared if isinstance(shared, Pyramid) else open_pyramid(source)

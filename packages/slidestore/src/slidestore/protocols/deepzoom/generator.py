"""Deep Zoom tiles served from a slide's pyramid, native JPEG tiles passed through.

With the default settings (tile size = the slide's native tile size, no overlap) the
Deep Zoom grid of every level the slide stores natively is the stored tile grid, so a
viewer's JPEG tile request is answered with the stored bytes: no decode, no encode.
Every other tile is resampled (Lanczos) from the pyramid's decoded tiles of a finer
level, normally the nearest native one, and encoded; encoded tiles are kept in a
byte-bounded LRU so warm tiles cost a lookup. Geometry and resampling follow OpenSlide's
``DeepZoomGenerator``, the reference the tests compare with.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Final

import msgspec

from slidestore import imaging
from slidestore.cache import LRUCache
from slidestore.errors import InvalidRequest, PassthroughUnavailable
from slidestore.imaging import ImageFormat, RGBArray
from slidestore.protocols.deepzoom.dzi import dzi_xml
from slidestore.protocols.deepzoom.grid import DeepZoomGrid
from slidestore.protocols.deepzoom.rendition import PackedLevels
from slidestore.protocols.resample import level_scale, read_scaled
from slidestore.pyramid.pyramid import Pyramid, shared_pyramid
from slidestore.source import SlideSource

ENCODED_CACHE_ENV: Final = "SLIDESTORE_DEEPZOOM_CACHE_BYTES"
DEFAULT_ENCODED_CACHE_BYTES: Final = int(os.environ.get(ENCODED_CACHE_ENV) or 64 * 2**20)
"""Encoded derived tiles kept per generator (a JPEG tile is 10-40 KiB: thousands fit)."""

MAX_REDUCTION_STEPS: Final = 3
"""A tile is resampled from at most 8x finer pixels per axis (64 source tile areas)."""

REDUCING_GAP: Final = 2.0
"""Pillow's two-step reduction (integer box reduce, then Lanczos over the last >= 2x).

It is what ``Image.thumbnail`` in OpenSlide's generator does, so large reductions match
it (boxes.tiff: identical tiles; CMU-1 coarse levels +7 dB) and cost a fraction of a
full-width Lanczos kernel. Only Deep Zoom uses it: a IIIF image is read from a level
less than 2x finer than its output, where Pillow never pre-reduces."""

RENDITION_VERSION: Final = 2
"""Bumped whenever rendering (or the rendition's files) changes, so prerendered tiles of
the old way are not used. 2: every tile's CRC-32 is in its pack's index."""

DEFAULT_TILE_SIZE: Final = 254
"""Used when the slide's native tiles are not square (Deep Zoom tiles must be)."""


class DeepZoomTile(msgspec.Struct, frozen=True, kw_only=True):
    """An encoded Deep Zoom tile and how it was obtained."""

    data: bytes
    media_type: str
    passthrough: bool
    """The stored JPEG tile, byte for byte (no decode, no encode)."""
    cached: bool
    """Taken from the encoded-tile cache (always False for passthrough tiles)."""
    prerendered: bool = False
    """Read from the slide's rendition (rendered ahead of time, see ``prerender``)."""


class DeepZoomStats(msgspec.Struct, frozen=True, kw_only=True):
    passthrough: int
    """Tiles answered with stored JPEG bytes."""
    rendered: int
    """Tiles decoded/resampled and encoded."""
    cache_hits: int
    """Tiles answered from the encoded-tile cache."""
    prerendered: int = 0
    """Tiles read from the rendition."""


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.passthrough = 0
        self.rendered = 0
        self.cache_hits = 0
        self.prerendered = 0


class DeepZoom:
    """A Deep Zoom view of a slide (or of one of its pyramids).

    ``level_count``, ``level_dimensions``, ``level_tiles`` and the tile boxes are those of
    OpenSlide's ``DeepZoomGenerator(slide, tile_size, overlap, limit_bounds=False)``.
    Thread-safe: one instance serves all requests for a slide. Pass ``cache`` to share
    one encoded-tile budget between generators (``encoded_cache_bytes`` is then unused).
    """

    def __init__(
        self,
        source: SlideSource | Pyramid,
        *,
        tile_size: int | None = None,
        overlap: int = 0,
        format: str = "jpeg",
        quality: int = 75,
        encoded_cache_bytes: int = DEFAULT_ENCODED_CACHE_BYTES,
        cache: LRUCache[Hashable, bytes] | None = None,
    ):
        pyramid = shared_pyramid(source)
        self.pyramid = pyramid
        self.slide: SlideSource = pyramid.slide
        base = pyramid.levels[0]
        if tile_size is None:
            square = base.tile_width == base.tile_height
            tile_size = base.tile_width if square else DEFAULT_TILE_SIZE
        if not isinstance(quality, int) or not 1 <= quality <= 100:
            raise InvalidRequest(f"quality must be an int in 1..100, got {quality!r}")
        if encoded_cache_bytes < 0:
            raise InvalidRequest(f"encoded_cache_bytes must be >= 0, got {encoded_cache_bytes}")
        self.grid = DeepZoomGrid(base.width, base.height, tile_size=tile_size, overlap=overlap)
        self.format: ImageFormat = imaging.normalize_format(format)
        self.quality = quality
        self._cache: LRUCache[Hashable, bytes] = (
            cache if cache is not None else LRUCache(encoded_cache_bytes)
        )
        self._token = object()  # keeps this generator's keys apart in a shared cache
        self._counters = _Counters()
        self._sources = tuple(self._source_level(z) for z in range(self.grid.level_count))
        self._native = tuple(self._passthrough_level(z) for z in range(self.grid.level_count))
        self._packs: PackedLevels | None = None

    # -- geometry, as openslide.deepzoom.DeepZoomGenerator --------------------------------

    @property
    def tile_size(self) -> int:
        return self.grid.tile_size

    @property
    def overlap(self) -> int:
        return self.grid.overlap

    @property
    def level_count(self) -> int:
        return self.grid.level_count

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return self.grid.level_dimensions

    @property
    def level_tiles(self) -> tuple[tuple[int, int], ...]:
        return self.grid.level_tiles

    @property
    def tile_count(self) -> int:
        return self.grid.tile_count

    def tile_dimensions(self, level: int, col: int, row: int) -> tuple[int, int]:
        box = self.grid.tile_box(level, col, row)
        return box.width, box.height

    def dzi(self, format: str | None = None) -> str:
        """The ``.dzi`` XML; ``format`` (default: this generator's) names the tile extension."""
        fmt = self.format if format is None else imaging.normalize_format(format)
        return dzi_xml(
            width=self.grid.width,
            height=self.grid.height,
            tile_size=self.grid.tile_size,
            overlap=self.grid.overlap,
            format=fmt,
        )

    def passthrough_level(self, level: int) -> int | None:
        """The slide level whose stored JPEG tiles are this Deep Zoom level's full tiles."""
        self.grid.check_level(level)
        return self._native[level]

    # -- tiles -----------------------------------------------------------------------

    def tile(self, level: int, col: int, row: int, format: str | None = None) -> bytes:
        """The encoded tile (``format`` defaults to the generator's)."""
        return self.tile_with_info(level, col, row, format).data

    def tile_with_info(
        self, level: int, col: int, row: int, format: str | None = None, *, stored: bool = True
    ) -> DeepZoomTile:
        """The encoded tile plus how it was obtained (passed through, prerendered, cached);
        ``stored=False``: the caller already asked :meth:`stored_tile`, render it."""
        if stored and (tile := self.stored_tile(level, col, row, format)) is not None:
            return tile
        fmt = self.format if format is None else imaging.normalize_format(format)
        rendered = False

        def compute() -> bytes:
            nonlocal rendered
            rendered = True
            return self.render_tile(level, col, row, fmt)

        data = self._cache.get_or_compute((self._token, level, col, row, fmt), compute)
        with self._counters.lock:
            if rendered:
                self._counters.rendered += 1
            else:
                self._counters.cache_hits += 1
        return DeepZoomTile(
            data=data, media_type=imaging.MEDIA_TYPES[fmt], passthrough=False, cached=not rendered
        )

    def stored_tile(
        self, level: int, col: int, row: int, format: str | None = None
    ) -> DeepZoomTile | None:
        """The tile if it is stored as is — a native tile or a prerendered one — else None.

        Costs one ``pread`` and never decodes, so a server may call it on its event loop.
        """
        fmt = self.format if format is None else imaging.normalize_format(format)
        self.grid.tile_box(level, col, row)  # validates level/col/row
        media_type = imaging.MEDIA_TYPES[fmt]
        if fmt == "jpeg" and self.passes_through(level, col, row):
            native = self._native[level]
            assert native is not None
            try:
                data = self.slide.raw_tile(native, col, row)
            except PassthroughUnavailable:
                pass  # the file stores no data for this tile: render it like any other
            else:
                with self._counters.lock:
                    self._counters.passthrough += 1
                return DeepZoomTile(
                    data=data, media_type=media_type, passthrough=True, cached=False
                )
        if self._packs is not None and fmt == self.format:
            packed = self._packs.get(level, col, row)
            if packed is not None:
                with self._counters.lock:
                    self._counters.prerendered += 1
                return DeepZoomTile(
                    data=packed,
                    media_type=media_type,
                    passthrough=False,
                    cached=False,
                    prerendered=True,
                )
        return None

    def passes_through(self, level: int, col: int, row: int) -> bool:
        """Whether a JPEG request for this tile is answered with a stored native tile."""
        if self._native[level] is None:
            return False
        box = self.grid.tile_box(level, col, row)
        return box.width == box.height == self.grid.tile_size

    def render_tile(self, level: int, col: int, row: int, format: str | None = None) -> bytes:
        """Render and encode the tile (no passthrough, no cache): what prerendering stores."""
        fmt = self.format if format is None else imaging.normalize_format(format)
        return imaging.encode(self.tile_pixels(level, col, row), fmt, self.quality)

    # -- renditions ------------------------------------------------------------------

    @property
    def rendition_key(self) -> str:
        """Names a rendition of this generator's settings (see ``prerender``)."""
        return (
            f"dz-{self.grid.tile_size}-{self.grid.overlap}-{self.format}"
            f"-q{self.quality}-r{RENDITION_VERSION}"
        )

    def use_rendition(
        self, directory: Path, *, on_discard: Callable[[], None] | None = None
    ) -> None:
        """Serve prerendered tiles from ``directory`` (the part written so far, and more as
        it appears), each checked against its CRC; a damaged one is rendered instead and
        its level discarded for prerendering to make again (``on_discard`` is told)."""
        columns = tuple(cols for cols, _ in self.grid.level_tiles)
        packs = PackedLevels(directory, columns, on_discard=on_discard)
        previous, self._packs = self._packs, packs
        if previous is not None:
            previous.close()

    def close(self) -> None:
        packs, self._packs = self._packs, None
        if packs is not None:
            packs.close()

    def tile_pixels(self, level: int, col: int, row: int) -> RGBArray:
        """The tile's RGB pixels, ``(height, width, 3)`` with the tile's clipped size."""
        box = self.grid.tile_box(level, col, row)
        source = self._sources[level]
        info = self.pyramid.levels[source]
        k = self.grid.scale_exponent(level)
        if info.index == k and (info.width, info.height) == self.grid.level_dimensions[level]:
            # The same pixel grid: a plain crop (cached decoded tiles, no resampling).
            sbox = (float(box.x), float(box.y), float(box.right), float(box.bottom))
        else:
            # Deep Zoom pixel i of this level covers level-0 pixels [i * 2**k, (i+1) * 2**k).
            # The last tile's box may reach past the image: like OpenSlide's generator,
            # clip and stretch it, since OpenSeadragon maps each level's declared size
            # onto the whole image (the level's last pixel ends at the image's edge).
            sx, sy = level_scale(self.pyramid, source)
            f = float(1 << k)
            sbox = (box.x * f * sx, box.y * f * sy, box.right * f * sx, box.bottom * f * sy)
        return read_scaled(
            self.pyramid,
            source,
            sbox,
            (box.width, box.height),
            stretch_edges=True,
            reducing_gap=REDUCING_GAP,
        )

    def stats(self) -> DeepZoomStats:
        with self._counters.lock:
            return DeepZoomStats(
                passthrough=self._counters.passthrough,
                rendered=self._counters.rendered,
                cache_hits=self._counters.cache_hits,
                prerendered=self._counters.prerendered,
            )

    # -- level mapping -----------------------------------------------------------------

    def _source_level(self, level: int) -> int:
        """The pyramid level a Deep Zoom level is resampled from.

        The coarsest *native* level at least as fine as the Deep Zoom level (half a pixel
        of slack over the whole level lets a floor-rounded scanner level count), so
        tiles are Lanczos reductions of the scanner's pixels as OpenSlide's generator
        makes them; the pyramid's derived levels are 2x2 box means, softer, 28-35 dB
        from the generator on textured tissue. To bound the work per tile when that
        native level is far finer (a single-level slide), a derived level is used
        instead once the reduction would exceed ``2**MAX_REDUCTION_STEPS`` per axis.
        """
        k = self.grid.scale_exponent(level)
        width, height = self.grid.width / (1 << k), self.grid.height / (1 << k)

        def fine_enough(index: int) -> bool:
            sx, sy = level_scale(self.pyramid, index)
            return self.grid.width * sx >= width - 0.5 and self.grid.height * sy >= height - 0.5

        candidates = [lv.index for lv in self.pyramid.levels if fine_enough(lv.index)]
        native = max(i for i in candidates if self.pyramid.levels[i].native_level is not None)
        capped = max((i for i in candidates if i <= k - MAX_REDUCTION_STEPS), default=0)
        return max(native, capped)

    def _passthrough_level(self, level: int) -> int | None:
        if self.grid.overlap:
            return None
        info = self.pyramid.levels[self._sources[level]]
        if info.index != self.grid.scale_exponent(level) or info.native_level is None:
            return None
        if (info.width, info.height) != self.grid.level_dimensions[level]:
            return None
        if not info.tile_width == info.tile_height == self.grid.tile_size:
            return None
        return info.native_level if self.slide.can_passthrough(info.native_level) else None

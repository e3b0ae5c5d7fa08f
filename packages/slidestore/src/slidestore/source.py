"""What a slide reader provides: the interface the pyramid, Deep Zoom, IIIF and the node use.

Every reader (OpenSlide, tiffslide, …) presents a slide as this protocol; nothing past
:mod:`slidestore.reading` knows which library decodes the file. The conformance kit
:mod:`slidestore.testing.reader_conformance` checks a reader against it on real files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Self

from slidestore.geometry import LevelInfo
from slidestore.imaging import RGBArray
from slidestore.metadata import SlideMetadata


class SlideSource(Protocol):
    """One open whole-slide image.

    Coordinates follow OpenSlide (see :mod:`slidestore.geometry`). Every read is
    thread-safe. Failures are named :class:`~slidestore.errors.SlidestoreError`
    subclasses: ``OutOfBounds``, ``RegionTooLarge``, ``SlideReadError`` (corrupt data),
    ``PassthroughUnavailable``, ``AssociatedImageNotFound``, ``SlideClosed``.
    """

    @property
    def path(self) -> Path:
        """The file (names the slide in errors; persistent caches fingerprint it)."""
        ...

    @property
    def levels(self) -> tuple[LevelInfo, ...]:
        """The levels stored in the file, finest first."""
        ...

    @property
    def metadata(self) -> SlideMetadata: ...

    @property
    def background(self) -> tuple[int, int, int]:
        """RGB filling areas outside the image (and transparent ones)."""
        ...

    @property
    def max_region_pixels(self) -> int:
        """Largest region a read returns (pixels); larger requests raise ``RegionTooLarge``."""
        ...

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level 0's (width, height)."""
        ...

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> RGBArray:
        """``(h, w, 3)`` pixels of ``size`` at ``level``, top-left ``location`` in level-0
        pixels; background where the region leaves the image."""
        ...

    def read_tile(self, level: int, col: int, row: int) -> RGBArray:
        """A native tile decoded, ``(tile_height, tile_width, 3)``, background past the edge."""
        ...

    def can_passthrough(self, level: int) -> bool:
        """Whether :meth:`raw_tile` can answer on this level (its tiles are stored as JPEG)."""
        ...

    def raw_tile(self, level: int, col: int, row: int) -> bytes:
        """The stored tile as a standalone JPEG, byte for byte, never decoded."""
        ...

    @property
    def associated_names(self) -> tuple[str, ...]: ...

    def associated_image(self, name: str) -> RGBArray: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

"""The default reader: OpenSlide (Aperio, Hamamatsu, Leica, MIRAX, generic TIFF, …)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import openslide

from slidestore import imaging
from slidestore.errors import SlideClosed, SlideReadError, UnsupportedFormat
from slidestore.imaging import RGBArray
from slidestore.metadata import AssociatedImageInfo
from slidestore.reading.slide import Opened, Slide, level_infos


def _open_handle(path: Path) -> openslide.OpenSlide:
    try:
        return openslide.OpenSlide(path)
    except openslide.OpenSlideUnsupportedFormatError as exc:
        raise UnsupportedFormat(f"{path}: not a slide format OpenSlide recognizes") from exc
    except openslide.OpenSlideError as exc:
        raise UnsupportedFormat(f"{path}: OpenSlide cannot open it: {exc}") from exc


class OpenSlideSlide(Slide):
    """A slide read with OpenSlide.

    OpenSlide handles are thread-safe. A read that fails replaces the handle, because
    OpenSlide puts a handle into a permanent error state after one failure.
    """

    reader: ClassVar[str] = "openslide"

    @classmethod
    def supported(cls, path: Path) -> bool:
        try:
            return openslide.OpenSlide.detect_format(path) is not None
        except (openslide.OpenSlideError, OSError):
            return False

    def _open(self) -> Opened:
        self._handle: openslide.OpenSlide | None = _open_handle(self.path)
        handle = self._handle
        props = dict(handle.properties)
        levels = level_infos(handle.level_dimensions, handle.level_downsamples, props, "openslide")
        associated = tuple(
            AssociatedImageInfo(
                name=name,
                width=int(props.get(f"openslide.associated.{name}.width", 0)),
                height=int(props.get(f"openslide.associated.{name}.height", 0)),
            )
            for name in sorted(handle.associated_images.keys())
        )
        return Opened(properties=props, levels=levels, associated=associated)

    def _close_reader(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    @contextmanager
    def _reading(self, what: str) -> Iterator[openslide.OpenSlide]:
        handle = self._handle
        if handle is None:
            raise SlideClosed(f"{self.path}: slide is closed")
        try:
            yield handle
        except openslide.OpenSlideError as exc:
            self._replace_handle(handle)
            raise SlideReadError(f"{self.path}: {what} failed: {exc}") from exc

    def _replace_handle(self, broken: openslide.OpenSlide) -> None:
        with self._lock:
            if self._handle is broken:
                try:
                    self._handle = _open_handle(self.path)
                except Exception:
                    self._handle = None
                    raise
                broken.close()

    def _read_pixels(self, x: int, y: int, level: int, width: int, height: int) -> RGBArray:
        what = f"reading region {width}x{height} at ({x}, {y}) level {level}"
        with self._reading(what) as handle:
            image = handle.read_region((x, y), level, (width, height))
        return imaging.flatten_rgba(image, self.background)

    def _read_associated(self, name: str) -> RGBArray:
        with self._reading(f"reading associated image {name!r}") as handle:
            image = handle.associated_images[name]
        return imaging.flatten_rgba(image, self.background)

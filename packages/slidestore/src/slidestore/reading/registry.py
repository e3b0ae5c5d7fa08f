"""Which reader opens a file: readers ranked by priority, each asked ``supported(path)``.

As in wsidicom/opentile and rio-tiler, the first reader (highest priority) that
recognizes the file opens it; one that recognizes it but cannot open it decides (the
file is refused with its reason, no other reader is tried behind its back). A reader is
imported only when it is asked, so an unused library costs nothing at import time.
Adding a reader: a module with a :class:`~slidestore.reading.slide.Slide` subclass and a
line in :data:`BUILTIN_READERS` (or :func:`register_reader` from outside).
"""

from __future__ import annotations

import importlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from slidestore.errors import InvalidRequest, SlideNotFound, UnsupportedFormat
from slidestore.reading.slide import Slide, SourceCheck, verified_layout


@dataclass(frozen=True)
class ReaderEntry:
    name: str
    priority: int
    """Higher is asked first."""
    target: str | type[Slide]
    """The reader class, or ``"module:Class"`` imported on first use."""

    def load(self) -> type[Slide]:
        if not isinstance(self.target, str):
            return self.target
        module, _, attribute = self.target.partition(":")
        reader = getattr(importlib.import_module(module), attribute)
        if not (isinstance(reader, type) and issubclass(reader, Slide)):
            raise TypeError(f"reader {self.name!r}: {self.target} is not a Slide subclass")
        return reader


BUILTIN_READERS: Final = (
    ReaderEntry("openslide", 100, "slidestore.reading.openslide_reader:OpenSlideSlide"),
    ReaderEntry("tiffslide", 50, "slidestore.reading.tiffslide_reader:TiffSlideSlide"),
)

_lock = threading.Lock()
_readers: dict[str, ReaderEntry] = {entry.name: entry for entry in BUILTIN_READERS}


def register_reader(name: str, reader: str | type[Slide], *, priority: int = 0) -> None:
    """Add (or replace) a reader; ``reader`` is a class or ``"module:Class"``."""
    with _lock:
        _readers[name] = ReaderEntry(name, priority, reader)


def reader_names() -> tuple[str, ...]:
    """Registered readers, in the order they are asked."""
    with _lock:
        entries = sorted(_readers.values(), key=lambda e: (-e.priority, e.name))
    return tuple(e.name for e in entries)


def reader_class(name: str) -> type[Slide]:
    with _lock:
        entry = _readers.get(name)
    if entry is None:
        raise InvalidRequest(f"no reader named {name!r} (readers: {', '.join(reader_names())})")
    return entry.load()


def choose_reader(path: Path) -> type[Slide]:
    """The highest-priority reader that recognizes ``path``."""
    names = reader_names()
    for name in names:
        reader = reader_class(name)
        if reader.supported(path):
            return reader
    if not path.exists():
        # Gone while the readers looked (a node quarantining a bad copy moves it away):
        # that is a missing file, not a foreign format.
        raise SlideNotFound(f"{path}: no such file")
    raise UnsupportedFormat(
        f"{path}: not a slide format any reader recognizes (tried {', '.join(names)})"
    )


def open_slide(
    path: str | os.PathLike[str],
    *,
    reader: str | None = None,
    max_region_pixels: int | None = None,
    check: SourceCheck | None = None,
) -> Slide:
    """Open a whole-slide image with ``reader`` (a registered name) or the first reader
    that recognizes it. Raises :class:`SlideNotFound` or :class:`UnsupportedFormat`.

    ``check``: every byte the slide reads is first held to checksums (a node's stored
    copy); what the readers parse to recognize and open the file is checked before
    they look at it, tile data before it is decoded."""
    where = Path(path)
    if not where.exists():
        raise SlideNotFound(f"{where}: no such file")
    if not where.is_file():
        raise UnsupportedFormat(f"{where}: not a regular file")
    layout = None if check is None else verified_layout(where, check)
    cls = reader_class(reader) if reader is not None else choose_reader(where)
    return cls(where, max_region_pixels=max_region_pixels, check=check, layout=layout)

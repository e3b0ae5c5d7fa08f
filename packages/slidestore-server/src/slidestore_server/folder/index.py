"""The slides under a folder, each under a stable id.

The id is the sha256 of the path relative to the root, the file's size and its mtime (in
ns): 64 hex digits like a blob id, so the node's routes, ETags and ``read`` tokens bound to
one slide work unchanged. It stays the same across restarts and machines sharing the folder
as long as the file is not moved or rewritten; a rewritten file gets a new id (so cached
tiles of the old content are never served for the new). Computing it reads no slide bytes.

Only files with a slide extension are listed (others are skipped, not opened); symlinked
files are followed (a folder of links to slides elsewhere works), symlinked directories are
not (no loops). Nothing but ids from the walk map to paths: no request names a file.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from slidestore.blobs.space import SpaceGuard
from slidestore.errors import BlobNotFound, SlideReadError

SLIDE_EXTENSIONS: Final = frozenset(
    (".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif")
)


@dataclass(frozen=True, slots=True)
class FolderSlide:
    id: str
    relative: str
    """Path below the root, with ``/`` separators."""
    path: Path
    size: int


def slide_id(relative: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(f"{relative}\0{size}\0{mtime_ns}".encode()).hexdigest()


def scan(root: Path) -> dict[str, FolderSlide]:
    found: dict[str, FolderSlide] = {}
    for directory, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or Path(name).suffix.lower() not in SLIDE_EXTENSIONS:
                continue
            path = Path(directory, name)
            try:
                stat = path.stat()  # follows a symlinked file
            except OSError:
                continue  # a dangling link
            relative = path.relative_to(root).as_posix()
            entry = FolderSlide(
                slide_id(relative, stat.st_size, stat.st_mtime_ns), relative, path, stat.st_size
            )
            found[entry.id] = entry
    return found


class FolderIndex:
    """What :class:`~slidestore_server.node.slides.SlideCache` needs of a blob store
    (``path(id)``), over the folder's slides."""

    def __init__(self, root: Path, *, space: SpaceGuard, rescan_seconds: float = 5.0) -> None:
        self.root = root.resolve()
        #: Called with the ids a walk no longer finds (the app closes their open slides).
        self.on_removed: Callable[[list[str]], None] = lambda ids: None
        self.rescan_seconds = rescan_seconds
        #: Space of the render cache (not of the folder): the prerenderer's estimate of a
        #: rendition must fit there before it starts.
        self.space = space
        self._lock = threading.Lock()
        self._slides = scan(self.root)
        self._scanned = time.monotonic()

    def refresh(self, *, force: bool = False) -> None:
        with self._lock:
            if not force and time.monotonic() - self._scanned < self.rescan_seconds:
                return
            self._scanned = time.monotonic()
        slides = scan(self.root)
        with self._lock:
            removed = [sid for sid in self._slides if sid not in slides]
            self._slides = slides
        if removed:
            self.on_removed(removed)

    def slides(self) -> list[FolderSlide]:
        self.refresh()
        with self._lock:
            return sorted(self._slides.values(), key=lambda s: s.relative)

    def get(self, slide_id: str) -> FolderSlide:
        with self._lock:
            found = self._slides.get(slide_id)
        if found is None:
            self.refresh()
            with self._lock:
                found = self._slides.get(slide_id)
        if found is None:
            raise BlobNotFound(f"no slide {slide_id} in the served folder (moved or changed?)")
        return found

    def ids(self) -> list[str]:
        """Every slide id (what the prerenderer walks; it drops renditions of the others)."""
        self.refresh()
        with self._lock:
            return list(self._slides)

    def path(self, slide_id: str) -> Path:
        return self.get(slide_id).path

    def size(self, slide_id: str) -> int:
        return self.path(slide_id).stat().st_size

    # What the node's checked read path asks of a blob store. A folder's files were never
    # ingested, so there are no checksums to hold them to: bytes are served as read, and a
    # file that changes under a read is a read error (its id changes with it anyway).

    def sums(self, slide_id: str) -> None:
        self.get(slide_id)

    def read_checked(self, slide_id: str, fd: int, start: int, end: int) -> bytes:
        data = os.pread(fd, end - start, start)
        if len(data) != end - start:
            raise self.corrupt(slide_id, f"bytes [{start}, {end}) are past its end")
        return data

    def corrupt(self, slide_id: str, why: str) -> SlideReadError:
        return SlideReadError(f"slide {slide_id} changed while it was read ({why})")

"""A rendition on disk: per-level tile packs and the manifest that marks it complete.

Layout: ``<directory>/level-<z>.pack`` (see :mod:`pack`) per level that has rendered
tiles, and ``manifest.json`` written last (by :func:`prerender`). Both the generator
(serving) and prerendering (writing) use this module; neither imports the other's.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Final

import msgspec

from slidestore.protocols.deepzoom.pack import TilePack

MANIFEST: Final = "manifest.json"


class Rendition(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    width: int
    height: int
    levels: tuple[int, ...]
    """Levels with a pack (the others are passed through entirely)."""
    tiles: int
    bytes: int
    seconds: float


def level_path(directory: Path, level: int) -> Path:
    return directory / f"level-{level}.pack"


def is_complete(directory: Path) -> bool:
    return (directory / MANIFEST).is_file()


def read_manifest(directory: Path) -> Rendition | None:
    try:
        return msgspec.json.decode((directory / MANIFEST).read_bytes(), type=Rendition)
    except (FileNotFoundError, msgspec.DecodeError):
        return None


class PackedLevels:
    """The packs of one rendition directory, picked up as they appear.

    Another process (the node's prerendering worker) may still be writing the rendition:
    a missing level is looked for again at most every ``refresh_seconds`` (a few stat calls)
    until the manifest says
    the rendition is complete.
    """

    def __init__(self, directory: Path, columns: tuple[int, ...], *, refresh_seconds: float = 0.1):
        self.directory = directory
        self._columns = columns
        self._refresh_seconds = refresh_seconds
        self._packs: dict[int, TilePack] = {}
        self._complete = False
        self._next_check = 0.0
        self._lock = threading.Lock()
        self._refresh(force=True)

    @property
    def complete(self) -> bool:
        return self._complete

    def get(self, level: int, col: int, row: int) -> bytes | None:
        pack = self._packs.get(level)
        if pack is None:
            if self._complete or not self._refresh():
                return None
            pack = self._packs.get(level)
            if pack is None:
                return None
        return pack.get(row * self._columns[level] + col)

    def _refresh(self, *, force: bool = False) -> bool:
        """Load packs that appeared since the last look; True when something was added."""
        now = time.monotonic()
        if not force and now < self._next_check:
            return False
        with self._lock:
            if not force and now < self._next_check:
                return False
            self._next_check = now + self._refresh_seconds
            complete = is_complete(self.directory)
            added = False
            for level in range(len(self._columns)):
                if level in self._packs:
                    continue
                path = level_path(self.directory, level)
                if path.exists():
                    self._packs = {**self._packs, level: TilePack(path)}
                    added = True
            self._complete = complete
            return added

    def close(self) -> None:
        with self._lock:
            packs, self._packs = self._packs, {}
        for pack in packs.values():
            pack.close()

"""A rendition on disk: per-level tile packs and the manifest that marks it complete.

Layout: ``<directory>/level-<z>.pack`` (see :mod:`pack`) per level that has rendered
tiles, and ``manifest.json`` written last (by :func:`prerender`). Both the generator
(serving) and prerendering (writing) use this module; neither imports the other's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import msgspec

from slidestore.errors import SlideReadError
from slidestore.protocols.deepzoom.pack import DamagedTile, TilePack

log = logging.getLogger(__name__)

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

    Every tile is checked against the CRC written with it. A rendition is a cache, not a
    copy of anything: a tile that fails (or a pack that does not open) is never served —
    :meth:`get` answers None, so the caller renders the tile — and its level's pack is
    discarded with the manifest, so prerendering makes that level again (``on_discard``
    tells it to look now).
    """

    def __init__(
        self,
        directory: Path,
        columns: tuple[int, ...],
        *,
        refresh_seconds: float = 0.1,
        on_discard: Callable[[], None] | None = None,
    ):
        self.directory = directory
        self._columns = columns
        self._refresh_seconds = refresh_seconds
        self._on_discard = on_discard
        self._packs: dict[int, TilePack] = {}
        self._complete = False
        self._next_check = 0.0
        self._lock = threading.Lock()
        self.damaged = 0
        """Tiles that failed their CRC (each counted once per open pack)."""
        self._refresh(force=True)

    @property
    def complete(self) -> bool:
        return self._complete

    def get(self, level: int, col: int, row: int) -> bytes | None:
        """The tile's checked bytes; None when the rendition does not hold it (yet), or
        its bytes there are damaged."""
        pack = self._packs.get(level)
        if pack is None:
            if self._complete or not self._refresh():
                return None
            pack = self._packs.get(level)
            if pack is None:
                return None
        try:
            return pack.get(row * self._columns[level] + col)
        except DamagedTile as exc:
            self._discard(level, pack, str(exc))
            return None

    def _discard(self, level: int, pack: TilePack | None, why: str) -> None:
        """Stop using a damaged pack and remove it (if the file is still that pack) and
        the manifest, so the level is rendered again; readers render meanwhile."""
        path = level_path(self.directory, level)
        with self._lock:
            if pack is not None and self._packs.get(level) is not pack:
                return  # another thread discarded it already
            self.damaged += 1
            # Open packs are closed by their last reader (``TilePack.__del__``), never
            # under one that is reading.
            self._packs = {k: v for k, v in self._packs.items() if k != level}
            self._complete = False
            with contextlib.suppress(OSError):
                same = pack is None or os.path.samestat(os.fstat(pack.fileno()), path.stat())
                if same:
                    path.unlink()
                    (self.directory / MANIFEST).unlink(missing_ok=True)
        log.warning("dropped a damaged rendition level: %s", why)
        if self._on_discard is not None:
            self._on_discard()

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
            broken: list[tuple[int, str]] = []
            for level in range(len(self._columns)):
                if level in self._packs:
                    continue
                path = level_path(self.directory, level)
                if path.exists():
                    try:
                        pack = TilePack(path)
                    except SlideReadError as exc:
                        broken.append((level, str(exc)))
                        continue
                    except FileNotFoundError:
                        continue
                    self._packs = {**self._packs, level: pack}
                    added = True
            self._complete = complete and not broken
        for level, why in broken:
            self._discard(level, None, why)
        return added

    def close(self) -> None:
        with self._lock:
            packs, self._packs = self._packs, {}
        for pack in packs.values():
            pack.close()

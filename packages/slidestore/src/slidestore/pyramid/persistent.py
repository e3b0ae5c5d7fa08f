"""Derived tiles kept across processes in any fsspec location.

Native tiles are not kept: re-reading them from the slide is as cheap as reading a copy.
Derived tiles on a one-level slide can cost thousands of native decodes each, so a node
keeps them on disk (or object storage). Entries are addressed by the slide's content
fingerprint, so a renamed or re-uploaded copy of the same file reuses them and a different
file can never be served another's tiles.

Format (lossless): ``MAGIC`` + big-endian uint16 height, width + zlib of the raw RGB bytes.
zlib's checksum catches torn or corrupt entries, which are then treated as absent.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import struct
import threading
import uuid
import zlib
from typing import TYPE_CHECKING, Final

import fsspec
import numpy as np

from slidestore.imaging import RGBArray

if TYPE_CHECKING:
    from slidestore.source import SlideSource

log = logging.getLogger(__name__)

MAGIC: Final = b"SSTILE1\0"
_HEADER: Final = struct.Struct(">HH")
FORMAT_VERSION: Final = "v1"
"""Part of every path: bump it when derivation changes, and old entries stop matching."""
_SAMPLE: Final = 2**20


def slide_fingerprint(slide: SlideSource) -> str:
    """OpenSlide's quickhash when the format has one, else a hash of the file's size and ends."""
    if slide.metadata.quickhash:
        return slide.metadata.quickhash
    digest = hashlib.sha256()
    with open(slide.path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        digest.update(size.to_bytes(8, "big"))
        digest.update(f.read(_SAMPLE))
        f.seek(max(0, size - _SAMPLE))
        digest.update(f.read(_SAMPLE))
    return digest.hexdigest()


def encode_tile(tile: RGBArray) -> bytes:
    h, w = tile.shape[:2]
    return MAGIC + _HEADER.pack(h, w) + zlib.compress(np.ascontiguousarray(tile).tobytes(), 1)


def decode_tile(data: bytes) -> RGBArray | None:
    """The tile, or ``None`` when ``data`` is not an intact entry."""
    head = len(MAGIC) + _HEADER.size
    if len(data) < head or not data.startswith(MAGIC):
        return None
    h, w = _HEADER.unpack_from(data, len(MAGIC))
    try:
        raw = zlib.decompress(data[head:])
    except zlib.error:
        return None
    if len(raw) != h * w * 3:
        return None
    return np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)


class PersistentTileCache:
    """Derived tiles of one slide under ``{url}/v1/{fingerprint}/{level}/{row}/{col}.tile``.

    Storage failures never fail a read: a tile that cannot be loaded is recomputed and one
    that cannot be saved is just not saved (both logged).
    """

    def __init__(self, url: str, fingerprint: str) -> None:
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = f"{root.rstrip('/')}/{FORMAT_VERSION}/{fingerprint}"
        self.hits = 0
        self.misses = 0
        self._counting = threading.Lock()

    def _count(self, hit: bool) -> None:
        with self._counting:
            if hit:
                self.hits += 1
            else:
                self.misses += 1

    def _path(self, level: int, col: int, row: int) -> str:
        return f"{self.root}/{level}/{row}/{col}.tile"

    def get(self, level: int, col: int, row: int, shape: tuple[int, int]) -> RGBArray | None:
        path = self._path(level, col, row)
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError:
            data = None
        except Exception as exc:
            log.warning("persistent tile cache: reading %s failed: %s", path, exc)
            data = None
        tile = None if data is None else decode_tile(data)
        if data is not None and (tile is None or tile.shape[:2] != shape):
            log.warning("persistent tile cache: ignoring damaged entry %s", path)
            tile = None
        self._count(hit=tile is not None)
        return tile

    def put(self, level: int, col: int, row: int, tile: RGBArray) -> None:
        path = self._path(level, col, row)
        # Write aside, then rename: readers see the old state or the whole entry, and two
        # writers of one tile (same bytes) just replace each other.
        temp = f"{path}.{uuid.uuid4().hex}.partial"
        try:
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            self.fs.pipe_file(temp, encode_tile(tile))
            self.fs.mv(temp, path)
        except Exception as exc:
            log.warning("persistent tile cache: writing %s failed: %s", path, exc)
            with contextlib.suppress(Exception):
                self.fs.rm_file(temp)

"""Where a run's pixels come from: a local slide file, a blob on this storage node, or a
blob's zarr pyramid over HTTP from any replica.

What crosses to a Dask worker is a small frozen *spec* (a path, or a blob id with replica
URLs and a read token), never pixels; each worker process opens the spec itself once and
keeps it (``open_source``). Every source presents the slide's power-of-two zarr pyramid
(``slidestore.pyramid``), so a local file and a remote blob give the same pixels.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import imagecodecs
import numpy as np
import zarr

from slidestore import imaging
from slidestore.client.slide import RemoteSlideInfo
from slidestore.cluster import wire
from slidestore.errors import OutOfBounds, SlidestoreError
from slidestore.geometry import Region
from slidestore.imaging import RGBArray

__all__ = [
    "Level",
    "LocalSource",
    "LocalSpec",
    "PixelSource",
    "RemoteSource",
    "RemoteSpec",
    "SourceSpec",
    "open_source",
]

WORKER_TILE_CACHE_BYTES = 64 << 20
"""Decoded-tile cache of a worker's pyramid: tiles are read about once per run, so a
small cache (for overlaps and derived levels) keeps a worker's memory flat."""


@dataclass(frozen=True)
class Level:
    """One pyramid level: array ``str(index)``, nominal downsample ``2**index``."""

    index: int
    width: int
    height: int
    downsample: float


class PixelSource(Protocol):
    width: int
    height: int
    mpp: float | None
    levels: tuple[Level, ...]
    local: bool
    """Pixels come from a file on this machine (counted as local bytes)."""

    def read(self, level: int, x: int, y: int, width: int, height: int) -> RGBArray:
        """``(height, width, 3)`` of pyramid ``level`` at (x, y) in that level's pixels;
        background outside the level."""
        ...


def _mpp(mpp_x: float | None, mpp_y: float | None) -> float | None:
    if mpp_x and mpp_y:
        return (mpp_x + mpp_y) / 2
    return mpp_x or mpp_y or None


class LocalSource:
    """A slide file read through its cached zarr pyramid."""

    local = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from slidestore.pyramid import PyramidOptions
        from slidestore.reading import open_slide

        self.slide = open_slide(path)
        self._scratch = threading.local()
        self.pyramid = self.slide.open_pyramid(PyramidOptions(cache_bytes=WORKER_TILE_CACHE_BYTES))
        meta = self.slide.metadata
        self.width, self.height = meta.width, meta.height
        self.mpp = _mpp(meta.mpp_x, meta.mpp_y)
        self.levels = tuple(
            Level(lv.index, lv.width, lv.height, lv.downsample) for lv in self.pyramid.levels
        )

    def read(self, level: int, x: int, y: int, width: int, height: int) -> RGBArray:
        tiles = self._inside_tiles(level, x, y, width, height)
        if tiles is None:  # partly outside the level: the pyramid fills the background
            return self.pyramid.read(level, Region(x=x, y=y, width=width, height=height))
        cols, rows, tw, th = tiles
        if len(cols) == 1 and len(rows) == 1:
            # Within one native tile: the decoded tile itself, no copy. A tile read whole
            # is read once per run, so it is decoded straight from the file and not kept
            # (the cache is for tiles that overlapping reads share, and derived levels).
            tx, ty = x - cols[0] * tw, y - rows[0] * th
            native = self.pyramid.levels[level].native_level
            if native is not None:
                tile = self._decode_tile(native, cols[0], rows[0], tw, th)
            else:
                tile = self.pyramid.tile(level, cols[0], rows[0])
            return tile[ty : ty + height, tx : tx + width]
        # Several whole or partial tiles: one copy into an array that every tile covers
        # (nothing to fill first).
        out = np.empty((height, width, 3), dtype=np.uint8)
        for row in rows:
            y0, y1 = max(y, row * th), min(y + height, (row + 1) * th)
            for col in cols:
                x0, x1 = max(x, col * tw), min(x + width, (col + 1) * tw)
                tile = self.pyramid.tile(level, col, row)
                out[y0 - y : y1 - y, x0 - x : x1 - x] = tile[
                    y0 - row * th : y1 - row * th, x0 - col * tw : x1 - col * tw
                ]
        return out

    def _decode_tile(self, level: int, col: int, row: int, tw: int, th: int) -> RGBArray:
        """A stored tile of a native level, decoded by the same decoder as ``read_tile``
        (libjpeg-turbo through imagecodecs) into this thread's scratch array when nothing
        still refers to it (else into a new one, which becomes the scratch array).

        Why: a worker thread allocating and freeing a 170 KB array per tile pays ~15% of
        the decode in page faults (Dask workers run with ``MALLOC_TRIM_THRESHOLD_`` low,
        and task threads allocate from their own arena); reusing one array does not. The
        reference count tells whether a model kept the previous tile (or a view of it) in
        its output or anywhere else: then that array is left to it.
        """
        if not self.slide.can_passthrough(level):
            return self.slide.read_tile(level, col, row)
        try:
            data = self.slide.raw_tile(level, col, row)  # frame checked against the tile size
        except SlidestoreError:  # no stored data: read_tile gives the background
            return self.slide.read_tile(level, col, row)
        scratch = getattr(self._scratch, "array", None)
        # Referents of an unshared scratch array: the thread-local slot, this name and
        # getrefcount's argument.
        if scratch is None or scratch.shape != (th, tw, 3) or sys.getrefcount(scratch) > 3:
            scratch = np.empty((th, tw, 3), dtype=np.uint8)
            self._scratch.array = scratch
        try:
            imagecodecs.jpeg8_decode(data, out=scratch)
        except Exception:  # not 8-bit RGB JPEG after all: the checked path names the error
            self._scratch.array = None
            return self.slide.read_tile(level, col, row)
        return scratch

    def _inside_tiles(
        self, level: int, x: int, y: int, width: int, height: int
    ) -> tuple[range, range, int, int] | None:
        """The native tile columns and rows under a region wholly inside ``level``."""
        if not 0 <= level < len(self.levels) or width <= 0 or height <= 0:
            return None
        info = self.pyramid.levels[level]
        if x < 0 or y < 0 or x + width > info.width or y + height > info.height:
            return None
        if width * height > self.slide.max_region_pixels:
            return None  # the pyramid names the limit
        tw, th = info.tile_width, info.tile_height
        return (
            range(x // tw, (x + width - 1) // tw + 1),
            range(y // th, (y + height - 1) // th + 1),
            tw,
            th,
        )


class RemoteSource:
    """A blob's pyramid read over HTTP (``GET /zarr/{blob}/{key}``), failing over replicas."""

    local = False

    def __init__(self, spec: RemoteSpec) -> None:
        from slidestore.client.http import Transport
        from slidestore.client.replicas import ReplicaSet
        from slidestore.client.store import FailoverHTTPStore

        self.info: RemoteSlideInfo = spec.info
        transport = Transport(list(spec.coordinators), spec.token)
        if spec.views:
            replicas = ReplicaSet(spec.blob_id, list(spec.views), transport=transport)
        else:
            replicas = ReplicaSet(spec.blob_id, list(spec.urls), transport=transport, refresh=False)
        self.group = zarr.open_group(
            store=FailoverHTTPStore(replicas), mode="r", zarr_format=3, use_consolidated=False
        )
        meta = self.info.metadata
        self.width, self.height = meta.width, meta.height
        self.mpp = _mpp(meta.mpp_x, meta.mpp_y)
        self.background = meta.background_color
        self.levels = tuple(
            Level(lv.index, lv.width, lv.height, lv.downsample) for lv in self.info.pyramid_levels
        )

    def read(self, level: int, x: int, y: int, width: int, height: int) -> RGBArray:
        info = self.levels[level]
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + width, info.width), min(y + height, info.height)
        if x1 <= x0 or y1 <= y0:
            raise OutOfBounds(f"region {width}x{height} at ({x}, {y}) lies outside level {level}")
        array = self.group[str(info.index)]
        assert isinstance(array, zarr.Array)
        pixels = np.asarray(array[:, y0:y1, x0:x1])
        if (x0, y0, x1, y1) == (x, y, x + width, y + height):
            # Inside the level: the one copy from zarr's planar chunks to (h, w, 3).
            return np.ascontiguousarray(pixels.transpose(1, 2, 0))
        out = imaging.fill(height, width, self.background)
        out[y0 - y : y1 - y, x0 - x : x1 - x] = pixels.transpose(1, 2, 0)
        return out


@dataclass(frozen=True)
class LocalSpec:
    """A slide file every worker can open at ``path`` (a shared or local filesystem)."""

    path: str

    @property
    def key(self) -> tuple[str, ...]:
        return ("file", self.path)

    @property
    def identity(self) -> tuple[object, ...]:
        """Changes when the file does (for caches of what was computed from it)."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return self.key
        return (*self.key, stat.st_size, stat.st_mtime_ns, stat.st_ino)

    def open(self) -> PixelSource:
        return LocalSource(self.path)


@dataclass(frozen=True)
class RemoteSpec:
    """A blob in a cluster: where its replicas are, and a read token for them."""

    blob_id: str
    urls: tuple[str, ...]
    """Replica node URLs, preferred first."""
    node_ids: tuple[str, ...]
    """The nodes holding a replica (for locality)."""
    coordinators: tuple[str, ...]
    token: str | None
    info: RemoteSlideInfo
    views: tuple[wire.ReplicaView, ...] = ()
    """The coordinator's replica list when known (lets a worker refresh it)."""

    @property
    def key(self) -> tuple[str, ...]:
        return ("blob", self.blob_id, *self.urls)

    @property
    def identity(self) -> tuple[object, ...]:
        """A blob's id is its content's sha256."""
        return ("blob", self.blob_id)

    def open(self) -> PixelSource:
        # On a storage node's worker the blob file itself is read (no HTTP, no copy).
        from slidestore.analysis.locality import local_blob_path

        path = local_blob_path(self.blob_id)
        if path is not None:
            return LocalSource(path)
        return RemoteSource(self)


SourceSpec = LocalSpec | RemoteSpec


_open: collections.OrderedDict[tuple[str, ...], PixelSource] = collections.OrderedDict()
_open_lock = threading.Lock()
OPEN_SOURCES = 8


def open_source(spec: SourceSpec) -> PixelSource:
    """The worker process's open source for ``spec`` (opened once, then reused)."""
    key = spec.key
    with _open_lock:
        found = _open.get(key)
        if found is not None:
            _open.move_to_end(key)
            return found
    source = spec.open()
    with _open_lock:
        _open[key] = source
        while len(_open) > OPEN_SOURCES:
            _open.popitem(last=False)
    return source


def spec_for(slide: object) -> SourceSpec:
    """The spec of a local ``Slide`` or a client ``RemoteSlide``/``AsyncRemoteSlide``."""
    from slidestore.reading import Slide

    if isinstance(slide, Slide):
        return LocalSpec(str(Path(slide.path).resolve()))
    if isinstance(slide, (str, os.PathLike)):
        return LocalSpec(str(Path(slide).resolve()))
    core = getattr(slide, "_core", slide)  # the sync RemoteSlide wraps an AsyncRemoteSlide
    from slidestore.client.slide import AsyncRemoteSlide

    if isinstance(core, AsyncRemoteSlide):
        replicas = core.replica_set
        transport = replicas.transport
        node_ids = tuple(view.node_id for view in replicas.views)
        return RemoteSpec(
            blob_id=core.blob_id,
            urls=tuple(replicas.urls),
            node_ids=node_ids,
            coordinators=tuple(transport.coordinators),
            token=transport.token,
            info=core.info,
            views=tuple(replicas.views),
        )
    raise TypeError(
        f"analysis runs on a slidestore.Slide, a path or a RemoteSlide, not {type(slide).__name__}"
    )

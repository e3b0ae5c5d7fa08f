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
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import zarr

from slidestore import imaging
from slidestore.client.slide import RemoteSlideInfo
from slidestore.cluster import wire
from slidestore.errors import OutOfBounds
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
        self.pyramid = self.slide.open_pyramid(PyramidOptions(cache_bytes=WORKER_TILE_CACHE_BYTES))
        meta = self.slide.metadata
        self.width, self.height = meta.width, meta.height
        self.mpp = _mpp(meta.mpp_x, meta.mpp_y)
        self.levels = tuple(
            Level(lv.index, lv.width, lv.height, lv.downsample) for lv in self.pyramid.levels
        )

    def read(self, level: int, x: int, y: int, width: int, height: int) -> RGBArray:
        return self.pyramid.read(level, Region(x=x, y=y, width=width, height=height))


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

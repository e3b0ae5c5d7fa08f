"""A slide stored in the cluster, read through its replicas.

``read_region`` goes through the zarr pyramid (not the node's IIIF endpoint): the chunks
are the slide's decoded native tiles, so a region read at a native level equals, pixel
for pixel, :meth:`slidestore.Slide.read_region` on the file when the location is a
multiple of the level's downsample (OpenSlide resamples regions that start between level
pixels), with no re-encoding loss and with replica failover for every tile.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np
import zarr
import zarr.api.asynchronous
from zarr.core.array import AsyncArray
from zarr.core.group import AsyncGroup

from slidestore import errors, imaging
from slidestore.client.http import Transport
from slidestore.client.replicas import ReplicaSet, fetch_blob_view
from slidestore.client.store import FailoverHTTPStore
from slidestore.cluster import wire
from slidestore.imaging import RGBArray
from slidestore.metadata import SlideMetadata


class RemoteLevel(msgspec.Struct, frozen=True, kw_only=True):
    """One level of the node's zarr pyramid (array ``str(index)``)."""

    index: int
    width: int
    height: int
    downsample: float
    native_level: int | None
    """The slide level presenting it, None when derived (2x2 means)."""


class RemoteSlideInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A node's ``GET /slides/{blob_id}/info``."""

    blob_id: str
    metadata: SlideMetadata
    pyramid_levels: tuple[RemoteLevel, ...]


_info_decoder = msgspec.json.Decoder(RemoteSlideInfo)


class AsyncRemoteSlide:
    """Metadata, zarr pyramid, regions and thumbnail of one blob; every read fails over."""

    def __init__(self, info: RemoteSlideInfo, replica_set: ReplicaSet) -> None:
        self.info = info
        self.blob_id = info.blob_id
        self.replica_set = replica_set
        self.store = FailoverHTTPStore(replica_set)
        self._group: AsyncGroup | None = None

    @classmethod
    async def open(
        cls,
        transport: Transport,
        blob_id: str,
        *,
        replicas: list[wire.ReplicaView] | list[str] | None = None,
    ) -> AsyncRemoteSlide:
        """Open ``blob_id``: replicas from the coordinator unless given (then no refresh)."""
        if replicas is None:
            replica_set = ReplicaSet(
                blob_id, (await fetch_blob_view(transport, blob_id)).replicas, transport=transport
            )
        else:
            replica_set = ReplicaSet(blob_id, replicas, transport=transport, refresh=False)
        response = await replica_set.get(f"/slides/{blob_id}/info")
        assert response is not None
        try:
            info = _info_decoder.decode(response.content)
        except msgspec.ValidationError as exc:
            raise errors.SlidestoreError(f"blob {blob_id}: unexpected slide info: {exc}") from exc
        return cls(info, replica_set)

    @property
    def metadata(self) -> SlideMetadata:
        return self.info.metadata

    @property
    def replicas(self) -> tuple[wire.ReplicaView, ...]:
        """The replicas as the coordinator last listed them (empty when opened by URLs)."""
        return self.replica_set.views

    async def pyramid(self) -> AsyncGroup:
        """The OME-Zarr group (arrays ``"0"``, ``"1"``, …, each ``(3, height, width)`` uint8)."""
        if self._group is None:
            self._group = await zarr.api.asynchronous.open_group(
                store=self.store, mode="r", zarr_format=3, use_consolidated=False
            )
        return self._group

    def level_for(self, level: int) -> RemoteLevel:
        """The pyramid level presenting slide level ``level``."""
        for candidate in self.info.pyramid_levels:
            if candidate.native_level == level:
                return candidate
        raise errors.OutOfBounds(
            f"blob {self.blob_id}: slide level {level} is not a level of the pyramid "
            f"(native levels: {[lv.native_level for lv in self.info.pyramid_levels]}); "
            "read the pyramid arrays directly"
        )

    async def read_region(
        self, location: tuple[int, int], level: int, size: tuple[int, int]
    ) -> RGBArray:
        """``(h, w, 3)`` uint8 pixels like :meth:`slidestore.Slide.read_region`: ``size``
        (w, h) at slide level ``level``, top-left ``location`` in level-0 pixels; outside
        the slide is background colour."""
        x, y = (int(v) for v in location)
        w, h = (int(v) for v in size)
        if w <= 0 or h <= 0:
            raise errors.InvalidRequest(f"region size must be positive, got {w}x{h}")
        target = self.level_for(level)
        downsample = self.metadata.levels[level].downsample
        lx, ly = math.floor(x / downsample), math.floor(y / downsample)
        x0, y0 = max(lx, 0), max(ly, 0)
        x1, y1 = min(lx + w, target.width), min(ly + h, target.height)
        if x1 <= x0 or y1 <= y0:
            raise errors.OutOfBounds(
                f"blob {self.blob_id}: region {w}x{h} at ({x}, {y}) lies outside level "
                f"{level} ({target.width}x{target.height})"
            )
        array = await (await self.pyramid()).getitem(str(target.index))
        assert isinstance(array, AsyncArray)
        pixels = np.asarray(await array.getitem((slice(None), slice(y0, y1), slice(x0, x1))))
        out = imaging.fill(h, w, self.metadata.background_color)
        out[y0 - ly : y1 - ly, x0 - lx : x1 - lx] = pixels.transpose(1, 2, 0)
        return out

    async def thumbnail(self, size: int = 512) -> RGBArray:
        """The node's thumbnail (longest side ``size``), decoded from PNG."""
        response = await self.replica_set.get(
            f"/slides/{self.blob_id}/thumbnail", params={"size": size, "format": "png"}
        )
        assert response is not None
        return imaging.decode(response.content)

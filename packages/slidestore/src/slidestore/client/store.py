"""A read-only zarr v3 store over the nodes' ``GET /zarr/{blob_id}/{key}``, with failover.

The node serves the pyramid of :class:`~slidestore.pyramid.PyramidStore` key by key
(chunks are decoded tiles, uncompressed, a few hundred KiB), so a chunk is fetched whole
and byte ranges are cut locally. Reads go through a :class:`ReplicaSet`: a node that
refuses the connection, times out or answers 5xx is skipped for the next replica, and
the replica list is refreshed from the coordinator when all of them failed.

Listing asks a replica for the keys (``GET /zarr/{blob_id}?list=dir|prefix``), so
``list(remote.pyramid)``, a group's ``members()`` and ``tree()`` work as on a local slide.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

from slidestore.client.replicas import ReplicaSet
from slidestore.pyramid.store import byte_slice


class FailoverHTTPStore(Store):
    """Keys of one blob's pyramid, read from whichever replica answers."""

    supports_writes = False
    supports_deletes = False
    supports_listing = True

    def __init__(self, replicas: ReplicaSet) -> None:
        super().__init__(read_only=True)
        self.replicas = replicas

    @property
    def blob_id(self) -> str:
        return self.replicas.blob_id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FailoverHTTPStore) and other.replicas is self.replicas

    def __hash__(self) -> int:
        return hash(id(self.replicas))

    def __repr__(self) -> str:
        return f"FailoverHTTPStore({self.blob_id[:12]}…, replicas={self.replicas.urls!r})"

    def with_read_only(self, read_only: bool = False) -> FailoverHTTPStore:
        if not read_only:
            raise ValueError("a FailoverHTTPStore is always read-only")
        return FailoverHTTPStore(self.replicas)

    # -- reads -------------------------------------------------------------------------

    async def _fetch(self, key: str) -> bytes | None:
        response = await self.replicas.get(f"/zarr/{self.blob_id}/{key}", missing_ok=True)
        return None if response is None else response.content

    async def get(
        self,
        key: str,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        data = await self._fetch(key)
        if data is None:
            return None
        return (prototype or default_buffer_prototype()).buffer.from_bytes(
            byte_slice(data, byte_range)
        )

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return list(await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges)))

    async def exists(self, key: str) -> bool:
        return await self._fetch(key) is not None

    async def getsize(self, key: str) -> int:
        data = await self._fetch(key)
        if data is None:
            raise FileNotFoundError(key)
        return len(data)

    # -- writes ------------------------------------------------------------------------

    async def set(self, key: str, value: Buffer) -> None:
        self._check_writable()

    async def delete(self, key: str) -> None:
        self._check_writable()

    # -- listing -----------------------------------------------------------------------

    async def _listing(self, mode: str, prefix: str) -> list[str]:
        response = await self.replicas.get(
            f"/zarr/{self.blob_id}", params={"list": mode, "prefix": prefix}
        )
        assert response is not None  # not missing_ok: a missing blob raised
        keys = response.json()["keys"]
        return [str(key) for key in keys]

    async def list(self) -> AsyncIterator[str]:
        for key in await self._listing("prefix", ""):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for key in await self._listing("prefix", prefix):
            yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        for name in await self._listing("dir", prefix):
            yield name

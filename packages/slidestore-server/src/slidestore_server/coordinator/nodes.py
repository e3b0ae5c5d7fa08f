"""The coordinator's HTTP calls to storage nodes, each with an admin token it mints.

``POST {node}/replicas`` (have it pull a copy), ``DELETE {node}/blobs/{id}`` (trim, delete,
retire), ``GET {node}/blobs/{id}/tiles`` and ``GET {node}/blobs/{id}`` (where its JPEG
tiles lie, then the bytes: stream into the archive) and, for the archive too, a
slide's thumbnail and info (kept there so an archived slide still shows). Tokens
come from the SDK's :class:`~slidestore.client.auth.MintedTokens` and error answers are
read by its error mapping (``slidestore.client.http``), like every client of the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from typing import Any

import anyio
import fsspec
import httpx
import msgspec

from slidestore.blobs import tile_map
from slidestore.blobs.archive_codec import Encoder, encoder_for, jpegxl_available, object_name
from slidestore.client.auth import MintedTokens
from slidestore.client.http import response_error
from slidestore.cluster.wire import PURPOSE_HEADER, REPLICA_PURPOSE, Replicate, Replicated
from slidestore.tokens import Operation

_CHUNK = 1 << 20
#: The slowest copy rate we wait for before calling a copy stuck (bytes per second).
_FLOOR_RATE = 5 << 20

log = logging.getLogger("slidestore.coordinator")


class NodeCallFailed(RuntimeError):
    """A node answered with an error (or not at all): the operation is retried later. The
    cause is the SDK's named error for the answer, when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The node's HTTP status, when it answered (507: it has no room)."""


def _failed(answer: httpx.Response, what: str) -> NodeCallFailed:
    error = response_error(answer, what)
    failed = NodeCallFailed(str(error), status=answer.status_code)
    failed.__cause__ = error
    return failed


class NodeClient:
    def __init__(self, secret: str, client: httpx.AsyncClient) -> None:
        self.secret = secret
        self.client = client
        # One short-lived token reused while fresh: minting costs an HMAC, not a round trip.
        self._tokens = MintedTokens(secret, "coordinator", {Operation.ADMIN}, ttl=300)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._tokens()}"}

    async def replicate(self, target_url: str, order: Replicate) -> Replicated:
        rate = min(order.bytes_per_second or _FLOOR_RATE, _FLOOR_RATE)
        timeout = httpx.Timeout(60.0 + order.size / rate, connect=5.0)
        try:
            answer = await self.client.post(
                f"{target_url}/replicas",
                content=msgspec.json.encode(order),
                headers={**self._headers(), "Content-Type": "application/json"},
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            raise NodeCallFailed(f"POST {target_url}/replicas: {type(exc).__name__}") from exc
        if answer.status_code not in (200, 201):  # 201: copied now; 200: already there
            raise _failed(answer, f"POST {target_url}/replicas")
        return msgspec.json.decode(answer.content, type=Replicated)

    async def delete(self, node_url: str, blob_id: str) -> None:
        """Delete a copy; a node that no longer has it (404) is as good as done."""
        try:
            answer = await self.client.delete(
                f"{node_url}/blobs/{blob_id}", headers=self._headers(), timeout=30.0
            )
        except httpx.HTTPError as exc:
            raise NodeCallFailed(f"DELETE {node_url}/blobs/{blob_id}: {exc!r}") from exc
        if answer.status_code not in (200, 204, 404):
            raise _failed(answer, f"DELETE {node_url}/blobs/{blob_id}")

    async def archive(
        self,
        node_url: str,
        blob_id: str,
        archive_url: str,
        bytes_per_second: float | None = None,
        *,
        jpegxl: bool = True,
    ) -> ArchivedCopy:
        """Stream a blob from a node to ``{archive_url}/{blob_id}`` (``….ssjx`` when its
        JPEG tiles make most of it and ``jpegxl``, ``….zst`` when zstd pays, see
        ``slidestore.blobs.archive_codec``); verify its sha256.

        Memory stays bounded (the codec holds a tile, a segment or its sample, then goes
        chunk by chunk). Encoding runs on a worker thread: JPEG XL takes a core for as long
        as the copy lasts. On a mismatch or a failure the partial object is removed and
        :class:`NodeCallFailed` raised, so a corrupt copy is never taken for the archive.
        ``bytes_per_second`` caps the stream like a repair copy
        (``SLIDESTORE_COPY_BYTES_PER_SECOND``).
        """
        base = archive_url.rstrip("/")
        digest = hashlib.sha256()
        tiles = await self._tile_map(node_url, blob_id) if jpegxl and jpegxl_available() else None
        encoder: Encoder | None = None
        # The filesystem and its root path, once: a chained URL (``simplecache::file://…``)
        # has no path a string operation could cut out of ``{base}/{name}``.
        fs, root = fsspec.core.url_to_fs(base)
        out: Any = None
        written: list[str] = []

        async def write(data: bytes) -> None:
            nonlocal out
            if out is None:
                if encoder is None or encoder.encoding is None:
                    return
                path = f"{root}/{object_name(blob_id, encoder.encoding)}"
                written.append(path)
                await anyio.to_thread.run_sync(lambda: fs.makedirs(root, exist_ok=True))
                out = await anyio.to_thread.run_sync(lambda: fs.open(path, "wb"))
            if data:
                await anyio.to_thread.run_sync(out.write, data)

        try:
            try:
                async with self.client.stream(
                    "GET",
                    f"{node_url}/blobs/{blob_id}",
                    headers={**self._headers(), PURPOSE_HEADER: REPLICA_PURPOSE},
                    timeout=60.0,
                ) as answer:
                    if answer.status_code != 200:
                        await answer.aread()
                        raise _failed(answer, f"GET {node_url}/blobs/{blob_id}")
                    size = int(answer.headers.get("content-length", 0))
                    encoder = encoder_for(size, tiles)
                    started = time.monotonic()
                    async for chunk in answer.aiter_bytes(_CHUNK):
                        digest.update(chunk)
                        await write(await anyio.to_thread.run_sync(encoder.feed, chunk))
                        if bytes_per_second:
                            ahead = encoder.raw_bytes / bytes_per_second
                            await asyncio.sleep(max(0.0, ahead - (time.monotonic() - started)))
                await write(await anyio.to_thread.run_sync(encoder.finish))
            finally:
                if out is not None:
                    await anyio.to_thread.run_sync(out.close)
            if digest.hexdigest() != blob_id:
                raise NodeCallFailed(f"copy of {blob_id} on {node_url} does not match its sha256")
        except httpx.HTTPError as exc:
            await _remove(fs, written)
            raise NodeCallFailed(f"GET {node_url}/blobs/{blob_id}: {exc!r}") from exc
        except BaseException:
            await _remove(fs, written)
            raise
        assert encoder is not None and encoder.encoding is not None
        return ArchivedCopy(
            url=f"{base}/{object_name(blob_id, encoder.encoding)}",
            size=encoder.raw_bytes,
            stored_bytes=encoder.stored_bytes,
            encoding=encoder.encoding.value,
        )

    async def _tile_map(self, node_url: str, blob_id: str) -> tile_map.TileMap | None:
        """Where the blob's JPEG tiles lie; None when the node cannot tell (the archive
        then takes zstd or raw: a missing map costs space, never the copy)."""
        url = f"{node_url}/blobs/{blob_id}/tiles"
        try:
            answer = await self.client.get(
                url, headers={**self._headers(), PURPOSE_HEADER: REPLICA_PURPOSE}, timeout=60.0
            )
            if answer.status_code == 200:
                return tile_map.decode(answer.content)
            log.warning("no tile map: %s", response_error(answer, f"GET {url}"))
        except (httpx.HTTPError, msgspec.DecodeError) as exc:
            log.warning("no tile map from %s: %r", url, exc)
        return None

    async def fetch(self, node_url: str, path: str) -> bytes | None:
        """A small answer of a node (a slide's thumbnail or info for the archive); None
        when it has none."""
        try:
            answer = await self.client.get(
                f"{node_url}{path}", headers=self._headers(), timeout=30.0
            )
        except httpx.HTTPError:
            return None
        return answer.content if answer.status_code == 200 else None


class ArchivedCopy(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`NodeClient.archive` stored."""

    url: str
    size: int
    stored_bytes: int
    encoding: str


async def _remove(fs: Any, paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            await anyio.to_thread.run_sync(lambda p=path: fs.rm(p))

"""Raw blob bytes: ``GET``/``HEAD``/``DELETE /blobs/{blob_id}``, and
``GET /blobs/{blob_id}/tiles``: where its JPEG tiles lie (``slidestore.blobs.tile_map``,
msgpack), what the archive's JPEG XL encoding needs before it streams the bytes. It tells
the layout of the raw file, so it needs what the bytes need: ``download`` on the blob.

Served straight from disk in 1 MiB reads on worker threads, so a 25 GB blob costs the
same memory as a small one. A pull by another node (``Slidestore-Purpose: replica``) is
paced while people use this node (``node/foreground.py``). A blob id is the sha256 of its
content, so the strong ETag is the id itself and responses are cacheable forever.

Range: one ``bytes=`` range is served as 206. Several ranges in one request are refused
with 416 rather than answered with the whole blob (which could be 25 GB nobody asked
for); malformed and unsatisfiable ranges are 416 too, with ``Content-Range: bytes */size``.
A range in another unit is ignored (RFC 9110 §14.2). ``If-Range`` with anything but the
blob's ETag turns the request into a plain 200.
"""

from __future__ import annotations

import logging
import re
from typing import Final

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from slidestore.blobs import BlobRange, tile_map
from slidestore.cluster.wire import PURPOSE_HEADER, REPLICA_PURPOSE
from slidestore.errors import RangeNotSatisfiable, ReplicaCorrupt
from slidestore.tokens import Operation
from slidestore_server.auth import require
from slidestore_server.errors import error_response
from slidestore_server.node.foreground import Foreground
from slidestore_server.node.responses import etag_matches
from slidestore_server.node.state import NodeState
from slidestore_server.params import blob_id_param as _blob_id

log = logging.getLogger("slidestore.blobs")

_CHUNK: Final = 1 << 20
_BUSY_CHUNK: Final = 256 << 10
_RANGE: Final = re.compile(r"([0-9]{0,20})-([0-9]{0,20})")


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The single byte range ``[start, end)`` a Range header asks for.

    None when the header uses a unit other than bytes (to be ignored);
    :class:`RangeNotSatisfiable` when it is malformed, lists several ranges, or lies
    outside the blob.
    """
    unit, equals, spec = header.partition("=")
    if not equals:
        raise RangeNotSatisfiable(f"malformed Range header {header[:60]!r}")
    if unit.strip().lower() != "bytes":
        return None
    ranges = [part.strip() for part in spec.split(",") if part.strip()]
    if len(ranges) != 1:
        raise RangeNotSatisfiable(
            "exactly one byte range per request is supported" if ranges else "empty Range header"
        )
    match = _RANGE.fullmatch(ranges[0])
    if match is None or match.group(0) == "-":
        raise RangeNotSatisfiable(f"malformed byte range {ranges[0][:60]!r}")
    first, last = match.groups()
    if not first:  # suffix range: the last N bytes
        count = int(last)
        if count == 0 or size == 0:
            raise RangeNotSatisfiable(f"suffix range {ranges[0]!r} selects no bytes")
        return max(0, size - count), size
    start = int(first)
    if last and int(last) < start:
        raise RangeNotSatisfiable(f"byte range {ranges[0]!r} ends before it starts")
    if start >= size:
        raise RangeNotSatisfiable(f"byte range {ranges[0]!r} starts past the blob's {size} bytes")
    end = min(int(last) + 1, size) if last else size
    return start, end


class BlobResponse(Response):
    """Streams an open :class:`BlobRange`; stops reading as soon as the client leaves."""

    def __init__(
        self,
        blob_range: BlobRange,
        *,
        status_code: int,
        headers: dict[str, str],
        yield_to: Foreground | None = None,
        busy_bytes_per_second: float = 0.0,
    ):
        super().__init__(status_code=status_code, headers=headers)
        self.blob_range = blob_range
        self.yield_to = yield_to
        self.busy_bytes_per_second = busy_bytes_per_second

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            # The first chunk is read (and checked) before the status goes out, so a copy
            # found bad there is answered 503 replica_corrupt, not 200 and no bytes.
            try:
                first = await anyio.to_thread.run_sync(self.blob_range.read, _CHUNK)
            except ReplicaCorrupt as exc:
                await error_response(503, exc.code, str(exc))(scope, receive, send)
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            async with anyio.create_task_group() as tasks:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tasks.cancel_scope.cancel()

                tasks.start_soon(watch_disconnect)
                try:
                    await self._stream(send, first)
                except ReplicaCorrupt:
                    # Found bad mid-body (already quarantined): end the response short of
                    # its Content-Length, so the client sees a broken transfer, not data.
                    log.warning("stopped sending a corrupt copy mid-body")
                tasks.cancel_scope.cancel()
        finally:
            self.blob_range.close()

    async def _stream(self, send: Send, first: bytes) -> None:
        blob_range = self.blob_range
        size = _CHUNK
        chunk = first
        while chunk:
            await send(
                {"type": "http.response.body", "body": chunk, "more_body": blob_range.remaining > 0}
            )
            if self.yield_to is not None and self.yield_to.busy():
                # Smaller writes while people wait: handing 1 MiB to a loopback or LAN socket
                # holds the event loop 0.5-0.8 ms here, 256 KiB about 0.25 ms.
                size = _BUSY_CHUNK
                await anyio.sleep(len(chunk) / self.busy_bytes_per_second)
            else:
                size = _CHUNK
            chunk = (
                await anyio.to_thread.run_sync(blob_range.read, size)
                if blob_range.remaining
                else b""
            )
        if blob_range.length == 0:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def get_blob(request: Request) -> Response:
    blob_id = _blob_id(request)
    require(request, Operation.DOWNLOAD, blob_id)
    node: NodeState = request.app.state.node
    size = node.blobs.size(blob_id)  # one stat: not worth a thread hop
    etag = f'"{blob_id}"'
    headers = {
        "ETag": etag,
        "Cache-Control": f"public, max-age={node.settings.cache_max_age}, immutable",
        "Accept-Ranges": "bytes",
    }
    if etag_matches(request, etag):
        return Response(status_code=304, headers=headers)
    start, end, status = 0, size, 200
    range_header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if range_header is not None and (if_range is None or if_range.strip() == etag):
        try:
            selected = parse_range(range_header, size)
        except RangeNotSatisfiable as exc:
            headers["Content-Range"] = f"bytes */{size}"
            return error_response(416, exc.code, str(exc), headers)
        if selected is not None:
            (start, end), status = selected, 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Type"] = "application/octet-stream"
    headers["Content-Length"] = str(end - start)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    blob_range = await run_in_threadpool(node.blobs.open_range, blob_id, start, end)
    # Another node pulling a replica: it waits for nobody, so it yields to those who do.
    pull = request.headers.get(PURPOSE_HEADER) == REPLICA_PURPOSE
    if not pull:
        node.access.touch(blob_id)  # a download: someone uses the slide
    rate = node.settings.busy_replica_bytes_per_second
    return BlobResponse(
        blob_range,
        status_code=status,
        headers=headers,
        yield_to=node.foreground if pull and rate > 0 else None,
        busy_bytes_per_second=rate,
    )


async def get_tile_map(request: Request) -> Response:
    blob_id = _blob_id(request)
    require(request, Operation.DOWNLOAD, blob_id)
    node: NodeState = request.app.state.node
    # Only the TIFF directories are read (tifffile, on a worker thread), never a tile.
    found = await run_in_threadpool(tile_map.read_tile_map, node.blobs.path(blob_id))
    return Response(
        tile_map.encode(found),
        media_type=tile_map.MEDIA_TYPE,
        headers={"Cache-Control": f"public, max-age={node.settings.cache_max_age}, immutable"},
    )


async def delete_blob(request: Request) -> Response:
    blob_id = _blob_id(request)
    require(request, Operation.DELETE, blob_id)
    node: NodeState = request.app.state.node
    await run_in_threadpool(node.blobs.delete, blob_id)
    node.blobs_gone([blob_id])
    await run_in_threadpool(node.renditions.forget, blob_id)
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    return [
        Route("/blobs/{blob_id}", get_blob, methods=["GET", "HEAD"], name="blob"),
        Route("/blobs/{blob_id}", delete_blob, methods=["DELETE"], name="blob_delete"),
        Route("/blobs/{blob_id}/tiles", get_tile_map, methods=["GET"], name="blob_tiles"),
    ]

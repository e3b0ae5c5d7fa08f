"""``/v1/placements`` and ``/v1/blobs/...``: where uploads go and what became of them."""

from __future__ import annotations

import asyncio
import time
import uuid

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from slidestore import tokens
from slidestore.blobs import check_blob_id
from slidestore.cluster import place
from slidestore.cluster.wire import (
    API,
    BlobStatus,
    BlobView,
    Lifecycle,
    Placement,
    PlacementRequest,
    Retention,
    Target,
)
from slidestore.errors import BlobNotFound, InvalidRequest
from slidestore.tokens import Capability, Operation
from slidestore_server.auth import require
from slidestore_server.coordinator import archive, catalog, waits
from slidestore_server.coordinator.errors import NoArchive, NotArchived, WaitTimeout
from slidestore_server.coordinator.http import coordinator, decode, float_param, json
from slidestore_server.params import blob_id_param as _blob_id

#: Upload tokens live as long as a large upload may take; nodes check write on them.
UPLOAD_TOKEN_TTL = 3600.0


async def placements(request: Request) -> Response:
    # ``write`` (a client that stores content), not an ``upload`` grant: a grant made by a
    # placement must not be able to ask for more placements.
    cap = require(request, Operation.WRITE)
    started = time.perf_counter()
    req = await decode(request, PlacementRequest)
    coord = coordinator(request)
    replicas = req.replicas if req.replicas is not None else coord.settings.replicas
    if req.size < 0 or not 1 <= replicas <= 16:
        raise InvalidRequest("size must be >= 0 and replicas between 1 and 16")
    if req.sha256 is not None:
        check_blob_id(req.sha256)
    secret = coord.settings.secret
    now = coord.now()
    # One connection, no transaction: the lookup and the insert are single statements,
    # and BEGIN/COMMIT round trips around them showed in the p99. A blob uploaded twice
    # at once just gets two placements; the first commit consumes one, the other expires.
    async with coord.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        if req.sha256 and await catalog.has_copy(conn, req.sha256, now, coord.settings.dead_after):
            # No token: knowing a sha256 grants nothing, not even a read of the blob.
            return json(
                Placement(
                    exists=True,
                    primary=None,
                    targets=(),
                    upload_url=None,
                    token=None,
                    replicas=replicas,
                ),
                headers=_timing(time.perf_counter() - started),
            )
        # Nodes that just refused a copy for lack of space are passed over.
        nodes = coord.refusals.apply(await coord.placeable_nodes(), now)
        # min_replicas=1: an upload goes ahead with one node down; repair adds the rest later.
        chosen = place(
            req.sha256 or uuid.uuid4().hex,
            req.size,
            nodes,
            replicas=replicas,
            exclude=req.exclude,
            min_replicas=1,
        )
        await catalog.record_placement(
            conn,
            blob_id=req.sha256,
            primary=chosen[0],
            size=req.size,
            target=replicas,
            expires_at=req.expires_at,
            now=now,
            owner=owner_of(cap),
        )
    urls = {node.node_id: node.url for node in nodes}
    targets = tuple(Target(node_id=n, url=urls[n]) for n in chosen)
    # One upload of exactly this size (and content, when declared), nothing else: the
    # node lets it create one session, and it reads nothing.
    token = tokens.mint(
        secret,
        ops={Operation.UPLOAD},
        blob=req.sha256 or tokens.ALL_BLOBS,
        size=req.size,
        ttl=UPLOAD_TOKEN_TTL,
        subject="placement",
    )
    elapsed = time.perf_counter() - started
    coord.metrics.placement_seconds.observe(elapsed)
    return json(
        Placement(
            exists=False,
            primary=targets[0],
            targets=targets,
            upload_url=f"{targets[0].url}/uploads",
            token=token,
            replicas=replicas,
        ),
        headers=_timing(elapsed),
    )


def _timing(seconds: float) -> dict[str, str]:
    """Server-Timing: the decision's own duration, apart from network and client time."""
    return {"Server-Timing": f"place;dur={seconds * 1000:.3f}"}


async def _view(request: Request, blob_id: str) -> BlobView | None:
    coord = coordinator(request)
    async with coord.engine.connect() as conn:
        return await catalog.view(conn, blob_id, coord.now(), coord.timeouts)


async def get_blob(request: Request) -> Response:
    blob_id = _blob_id(request)
    require(request, Operation.READ, blob_id)
    found = await _view(request, blob_id)
    if found is None:
        raise BlobNotFound(f"the cluster has no blob {blob_id}")
    return json(found)


async def wait_blob(request: Request) -> Response:
    """Long poll until the blob has ``replicas`` healthy copies on nodes that are not dead.

    An unknown blob is waited for too: the upload may not have been reported yet.
    """
    blob_id = _blob_id(request)
    cap = require(request, Operation.READ, blob_id)
    wanted = int(float_param(request, "replicas", 0, 0, 64))
    timeout = float_param(request, "timeout", 30.0, 0, 600)
    with waits.wait_slots(request).hold(cap):
        return await _wait(request, blob_id, wanted, timeout)


async def _wait(request: Request, blob_id: str, wanted: int, timeout: float) -> Response:
    deadline = time.monotonic() + timeout
    for interval in waits.poll_intervals():
        found = await _view(request, blob_id)
        if found is not None:
            if found.status in (BlobStatus.DELETED, BlobStatus.ARCHIVED):
                return json(found)  # it will never get copies: answer instead of timing out
            if len(found.replicas) >= (wanted or found.target):
                return json(found)
        left = deadline - time.monotonic()
        if left <= 0:
            have = 0 if found is None else len(found.replicas)
            raise WaitTimeout(f"blob {blob_id} has {have} copies after {timeout:g} s")
        await asyncio.sleep(min(interval, left))
    raise AssertionError("poll_intervals never ends")


def owner_of(cap: Capability) -> str:
    """The client a token speaks for: its subject (minted by whoever holds the secret)."""
    return cap.sub or "client"


async def delete_blob(request: Request) -> Response:
    """An operator (``admin``) deletes outright. A client (``delete``) gives up its own
    claim, and the blob goes when no client that placed it still wants it: a portal never
    deletes a blob someone else uploaded, however many of its users know the sha256."""
    blob_id = _blob_id(request)
    cap = require(request, Operation.DELETE, blob_id)
    coord = coordinator(request)
    async with coord.engine.begin() as conn:
        if Operation.ADMIN not in cap.ops and not await catalog.drop_claim(
            conn, blob_id, owner_of(cap)
        ):
            return Response(status_code=204)
        holders = await catalog.mark_deleted(conn, blob_id)
    # Answered once recorded: a frozen holder must not hold the client (issue 19, item 8).
    request.app.state.loop.retention.delete_soon(blob_id, holders)
    return Response(status_code=204)


async def put_retention(request: Request) -> Response:
    blob_id = _blob_id(request)
    require(request, Operation.ADMIN)
    retention = await decode(request, Retention)
    coord = coordinator(request)
    async with coord.engine.begin() as conn:
        await catalog.set_retention(conn, blob_id, retention)
    return json(await _view(request, blob_id))


async def restore(request: Request) -> Response:
    """Copy an archived blob back; the body (a ``Retention``, optional) is its new retention,
    pinned by default so it is not archived again at once."""
    blob_id = _blob_id(request)
    require(request, Operation.ADMIN, blob_id)
    retention = await decode(request, Retention)
    coord = coordinator(request)
    async with coord.engine.begin() as conn:
        if await catalog.restore(conn, blob_id, retention, coord.lifecycle_now()) is None:
            raise NotArchived(f"blob {blob_id} has no archived copy")
        await catalog.bump(conn)
    coord.wake.set()  # the leader starts the copy from the archive now
    return json(await _view(request, blob_id))


async def archive_blob(request: Request) -> Response:
    """An operator archives a blob now (``admin``): the leader streams it into the archive
    and, once it is there, drops its copies. 202: asked; the view says when it is done."""
    blob_id = _blob_id(request)
    require(request, Operation.ADMIN, blob_id)
    coord = coordinator(request)
    if not coord.settings.archive_url:
        raise NoArchive("this cluster has no archive (SLIDESTORE_ARCHIVE_URL is not set)")
    async with coord.engine.begin() as conn:
        await catalog.request_archive(conn, blob_id)
    coord.wake.set()
    return json(await _view(request, blob_id), status=202)


async def put_lifecycle(request: Request) -> Response:
    """A blob's own idle period before archiving (``admin``)."""
    blob_id = _blob_id(request)
    require(request, Operation.ADMIN, blob_id)
    lifecycle = await decode(request, Lifecycle)
    coord = coordinator(request)
    async with coord.engine.begin() as conn:
        await catalog.set_lifecycle(conn, blob_id, lifecycle.archive_after_days)
    return json(await _view(request, blob_id))


async def archived_thumbnail(request: Request) -> Response:
    """An archived blob's thumbnail, kept in the archive (``read`` on the blob): what a
    portal shows while no node holds the slide."""
    blob_id = _blob_id(request)
    require(request, Operation.READ, blob_id)
    found = await _view(request, blob_id)
    data = None
    if found is not None and found.archive_url is not None:
        data = await archive.thumbnail(found.archive_url, blob_id)
    if data is None:
        raise BlobNotFound(f"no archived thumbnail of blob {blob_id}")
    return Response(
        data,
        media_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=3600", "Access-Control-Allow-Origin": "*"},
    )


def routes() -> list[Route]:
    blob = f"{API}/blobs/{{blob_id}}"
    return [
        Route(f"{API}/placements", placements, methods=["POST"]),
        Route(blob, get_blob, methods=["GET"]),
        Route(blob, delete_blob, methods=["DELETE"]),
        Route(f"{blob}/wait", wait_blob, methods=["GET"]),
        Route(f"{blob}/retention", put_retention, methods=["PUT"]),
        Route(f"{blob}/restore", restore, methods=["POST"]),
        Route(f"{blob}/archive", archive_blob, methods=["POST"]),
        Route(f"{blob}/lifecycle", put_lifecycle, methods=["PUT"]),
        Route(f"{blob}/thumbnail", archived_thumbnail, methods=["GET"]),
    ]

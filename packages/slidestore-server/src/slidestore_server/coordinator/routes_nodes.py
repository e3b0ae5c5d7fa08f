"""``/v1/nodes``: registration, heartbeats (one transaction each), listing, draining."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from slidestore.cluster import NodeState
from slidestore.cluster.wire import API, Heartbeat, HeartbeatAck, Register, RegisterAck
from slidestore.tokens import Operation
from slidestore_server.auth import require
from slidestore_server.coordinator import catalog, ledger, registry
from slidestore_server.coordinator.errors import NodeUnknown
from slidestore_server.coordinator.http import coordinator, decode, json


async def register(request: Request) -> Response:
    require(request, Operation.NODE)
    msg = await decode(request, Register)
    coord = coordinator(request)
    async with coord.engine.begin() as conn:
        await registry.register(conn, msg, coord.now(), coord.settings.replicas)
    async with coord.engine.connect() as conn:
        update = await ledger.update_for(conn, msg.node_id, 0)
    coord.forget_nodes()
    settings = coord.settings
    return json(
        RegisterAck(
            heartbeat_interval=settings.heartbeat_interval,
            suspect_after=settings.suspect_after,
            dead_after=settings.dead_after,
            tombstone_seconds=settings.tombstone_seconds,
            ledger=update,
        )
    )


log = logging.getLogger("slidestore.coordinator.nodes")


async def heartbeat(request: Request) -> Response:
    require(request, Operation.NODE)
    node_id = str(request.path_params["node_id"])
    msg = await decode(request, Heartbeat)
    coord = coordinator(request)
    async with coord.engine.begin() as conn:
        await registry.heartbeat(conn, node_id, msg, coord.now(), coord.settings.replicas)
    if msg.quarantined:
        coord.wake.set()  # repair the corrupt copies now, not at the next tick
        async with coord.engine.connect() as conn:
            lost = await catalog.lost(conn, msg.quarantined)
        for blob_id in lost:
            log.error(
                "blob %s is lost: every copy is corrupt and quarantined",
                blob_id,
                extra={"blob_id": blob_id, "node": node_id},
            )
    if msg.accessed:
        # Its own short transaction after the heartbeat's: its blob rows are locked after
        # the change serial there (catalog.next_seq), never before it.
        async with coord.engine.begin() as conn:
            await catalog.record_access(conn, msg.accessed, coord.lifecycle_now())
    # After the commit: on SQLite the heartbeat's transaction holds the write lock.
    async with coord.engine.connect() as conn:
        added = [ref.blob_id for ref in msg.added]
        update = await ledger.update_for(conn, node_id, msg.ledger_seq, added)
    return json(HeartbeatAck(state=NodeState.ALIVE, ledger=update))


async def list_nodes(request: Request) -> Response:
    require(request, Operation.ADMIN)  # addresses, zones and free space: an operator's view
    coord = coordinator(request)
    async with coord.engine.connect() as conn:
        return json(await registry.views(conn, coord.now(), coord.timeouts))


async def drain(request: Request) -> Response:
    """Mark a node as leaving (``?draining=false`` takes it back)."""
    require(request, Operation.ADMIN)
    node_id = str(request.path_params["node_id"])
    draining = request.query_params.get("draining", "true").lower() not in ("false", "0", "no")
    coord = coordinator(request)
    async with coord.engine.begin() as conn:
        await registry.set_draining(conn, node_id, draining)
        found = await registry.views(conn, coord.now(), coord.timeouts, node_id)
    coord.forget_nodes()
    if not found:
        raise NodeUnknown(f"node {node_id} is not registered")
    return json(found[0])


def routes() -> list[Route]:
    return [
        Route(f"{API}/nodes/register", register, methods=["POST"]),
        Route(f"{API}/nodes/{{node_id}}/heartbeat", heartbeat, methods=["POST"]),
        Route(f"{API}/nodes", list_nodes, methods=["GET"]),
        Route(f"{API}/nodes/{{node_id}}/drain", drain, methods=["POST"]),
    ]

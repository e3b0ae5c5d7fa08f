"""The node registry: identity, reported figures, liveness and blob inventories, in SQL.

The one registry (an in-memory twin once stood beside it as "reference semantics", tested
apart and drifting apart; its tests now run against this one, ``tests/test_registry.py``).

Each call is one transaction. Liveness is not stored as truth: views derive it from
``last_heartbeat`` with :func:`slidestore.cluster.state_at`, so an API answer is right
even while no leader is running; the leader records transitions in ``nodes.state``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from slidestore.blobs import is_blob_id
from slidestore.cluster import InvalidNodeReport, LivenessTimeouts, NodeInfo, NodeState, state_at
from slidestore.cluster.wire import Heartbeat, NodeReport, NodeView, Register
from slidestore_server.coordinator import catalog
from slidestore_server.coordinator.db import upsert
from slidestore_server.coordinator.errors import NodeUnknown
from slidestore_server.coordinator.schema import nodes, replicas


def _check(node_id: str, report: NodeReport) -> None:
    figures = (report.capacity_bytes, report.free_bytes, report.used_bytes, report.reserve_bytes)
    if not node_id or len(node_id) > 64:
        raise InvalidNodeReport("node id must be 1 to 64 characters")
    if min(figures) < 0:
        raise InvalidNodeReport(f"node {node_id}: byte counts must be >= 0")
    if report.free_bytes > report.capacity_bytes:
        raise InvalidNodeReport(f"node {node_id}: free bytes exceed capacity")


def _check_ledger(msg: Register) -> None:
    """What a node stored for a rebuild becomes rows: refuse what no coordinator sent."""
    ids = [p.blob_id for p in msg.policies] + [t.blob_id for t in msg.tombstones]
    for blob_id in ids:
        if not is_blob_id(blob_id):
            raise InvalidNodeReport(f"node {msg.node_id}: {blob_id[:80]!r} is no blob id")
    for policy in msg.policies:
        if not 1 <= policy.target <= 64 or any(len(o) > 128 for o in policy.owners):
            raise InvalidNodeReport(f"node {msg.node_id}: bad policy for {policy.blob_id}")
    if any(t.size < 0 for t in msg.tombstones):
        raise InvalidNodeReport(f"node {msg.node_id}: a tombstone with a negative size")


def _figures(report: NodeReport) -> dict[str, Any]:
    return {
        "capacity_bytes": report.capacity_bytes,
        "free_bytes": report.free_bytes,
        "used_bytes": report.used_bytes,
        "reserve_bytes": report.reserve_bytes,
        "load": report.load,
    }


async def register(conn: AsyncConnection, msg: Register, now: float, default_target: int) -> None:
    """A node (re)starts: upsert it as alive and replace its inventory with the full list.

    Draining survives re-registration (an operator's decision, not the node's).
    """
    _check(msg.node_id, msg.report)
    _check_ledger(msg)
    values = {
        "url": msg.url.rstrip("/"),
        "zone": msg.zone,
        "state": NodeState.ALIVE.value,
        "last_heartbeat": now,
        **_figures(msg.report),
    }
    stmt = upsert(conn, nodes).values(node_id=msg.node_id, draining=False, **values)
    await conn.execute(stmt.on_conflict_do_update(index_elements=["node_id"], set_=values))
    await conn.execute(delete(replicas).where(replicas.c.node_id == msg.node_id))
    await _put_replicas(conn, msg.node_id, (ref.blob_id for ref in msg.inventory), False)
    await _put_replicas(conn, msg.node_id, msg.quarantined, True)
    # Tombstones first: a copy of a blob deleted while its holder was away stays doomed.
    await catalog.learn_tombstones(conn, msg.tombstones)
    policies = {p.blob_id: p for p in msg.policies}
    await catalog.adopt(conn, msg.node_id, msg.inventory, now, default_target, policies)
    await catalog.bump(conn)


async def heartbeat(
    conn: AsyncConnection, node_id: str, msg: Heartbeat, now: float, default_target: int
) -> None:
    """Figures and inventory changes; raises :class:`NodeUnknown` for an unregistered node."""
    _check(node_id, msg.report)
    # The write comes first: on SQLite it takes the write lock before anything is read.
    result = await conn.execute(
        update(nodes)
        .where(nodes.c.node_id == node_id)
        .values(state=NodeState.ALIVE.value, last_heartbeat=now, **_figures(msg.report))
    )
    if result.rowcount == 0:
        raise NodeUnknown(f"node {node_id} is not registered")
    if msg.removed:
        await conn.execute(
            delete(replicas).where(
                replicas.c.node_id == node_id, replicas.c.blob_id.in_(msg.removed)
            )
        )
    await _put_replicas(conn, node_id, (ref.blob_id for ref in msg.added), False)
    await _put_replicas(conn, node_id, msg.quarantined, True)
    await catalog.adopt(conn, node_id, msg.added, now, default_target)
    if msg.added or msg.removed or msg.quarantined:
        await catalog.bump(conn)


async def _put_replicas(
    conn: AsyncConnection, node_id: str, blob_ids: Iterable[str], quarantined: bool
) -> None:
    rows = [{"blob_id": b, "node_id": node_id, "quarantined": quarantined} for b in blob_ids]
    if rows:
        stmt = upsert(conn, replicas)
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["blob_id", "node_id"], set_={"quarantined": quarantined}
            ),
            rows,
        )


async def add_replica(conn: AsyncConnection, blob_id: str, node_id: str) -> None:
    """A repair copy succeeded: count it now rather than at the target's next heartbeat."""
    await _put_replicas(conn, node_id, (blob_id,), False)


async def holds(conn: AsyncConnection, blob_id: str, node_id: str) -> bool:
    """Whether the node has a healthy copy of the blob on record."""
    found = await conn.execute(
        select(replicas.c.node_id).where(
            replicas.c.blob_id == blob_id,
            replicas.c.node_id == node_id,
            replicas.c.quarantined.is_(False),
        )
    )
    return found.first() is not None


async def drop_replica(conn: AsyncConnection, blob_id: str, node_id: str) -> None:
    await conn.execute(
        delete(replicas).where(replicas.c.blob_id == blob_id, replicas.c.node_id == node_id)
    )


def node_info(row: Any, now: float, timeouts: LivenessTimeouts) -> NodeInfo:
    return NodeInfo(
        node_id=row.node_id,
        url=row.url,
        zone=row.zone,
        capacity_bytes=row.capacity_bytes,
        free_bytes=row.free_bytes,
        used_bytes=row.used_bytes,
        reserve_bytes=row.reserve_bytes,
        state=state_at(row.last_heartbeat, now, timeouts),
        last_heartbeat=row.last_heartbeat,
        load=row.load,
        draining=row.draining,
    )


async def all_nodes(
    conn: AsyncConnection, now: float, timeouts: LivenessTimeouts
) -> list[NodeInfo]:
    rows = await conn.execute(select(nodes).order_by(nodes.c.node_id))
    return [node_info(row, now, timeouts) for row in rows]


async def changed_states(
    conn: AsyncConnection, now: float, timeouts: LivenessTimeouts
) -> list[NodeInfo]:
    """Nodes whose stored state is not what their last heartbeat makes them now (as
    :func:`slidestore.cluster.state_at` decides it): the database compares, so a pass over
    a quiet cluster of hundreds of nodes reads no rows at all."""
    current = case(
        (nodes.c.last_heartbeat > now - timeouts.suspect_after, NodeState.ALIVE.value),
        (nodes.c.last_heartbeat > now - timeouts.dead_after, NodeState.SUSPECT.value),
        else_=NodeState.DEAD.value,
    )
    rows = await conn.execute(select(nodes).where(nodes.c.state != current))
    return [node_info(row, now, timeouts) for row in rows]


async def record_states(conn: AsyncConnection, changed: Sequence[NodeInfo]) -> None:
    """Store the leader's view of each node's state, unless a heartbeat came in since the
    nodes were read (it made the node alive, and must not be overwritten)."""
    for node in changed:
        await conn.execute(
            update(nodes)
            .where(nodes.c.node_id == node.node_id, nodes.c.last_heartbeat == node.last_heartbeat)
            .values(state=node.state.value)
        )


async def set_draining(conn: AsyncConnection, node_id: str, draining: bool) -> None:
    result = await conn.execute(
        update(nodes).where(nodes.c.node_id == node_id).values(draining=draining)
    )
    if result.rowcount == 0:
        raise NodeUnknown(f"node {node_id} is not registered")
    await catalog.bump(conn)


async def views(
    conn: AsyncConnection, now: float, timeouts: LivenessTimeouts, node_id: str | None = None
) -> list[NodeView]:
    query = select(nodes).order_by(nodes.c.node_id)
    counts = select(replicas.c.node_id, func.count()).where(replicas.c.quarantined.is_(False))
    if node_id is not None:
        query = query.where(nodes.c.node_id == node_id)
        counts = counts.where(replicas.c.node_id == node_id)
    held = dict((await conn.execute(counts.group_by(replicas.c.node_id))).tuples().all())
    out = []
    for row in await conn.execute(query):
        info = node_info(row, now, timeouts)
        out.append(
            NodeView(
                node_id=info.node_id,
                url=info.url,
                zone=info.zone,
                state=info.state,
                capacity_bytes=info.capacity_bytes,
                free_bytes=info.free_bytes,
                used_bytes=info.used_bytes,
                reserve_bytes=info.reserve_bytes,
                load=info.load,
                last_heartbeat=info.last_heartbeat,
                draining=info.draining,
                blobs=held.get(info.node_id, 0),
            )
        )
    return out

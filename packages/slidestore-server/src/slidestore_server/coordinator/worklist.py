"""What the leader's loop has to do, read from SQL: blobs to repair, copies to delete,
blobs past their retention, and the counts behind ``/v1/status`` and ``/metrics``.

Each pass must cost little when nothing is wrong, so the repair query aggregates in the
database and returns only blobs whose counted copies differ from R (or that sit on a
draining node); ``plan_repair`` then decides what to do with those.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from slidestore.cluster import BlobReplicas, LivenessTimeouts, NodeState, state_at
from slidestore_server.coordinator import catalog
from slidestore_server.coordinator.schema import blobs, nodes, replicas

_CHUNK = 500  # ids per IN (...) list: far below SQLite's and asyncpg's parameter limits


def _live() -> Any:
    return and_(blobs.c.deleted.is_(False), blobs.c.archived.is_(False))


def _tally(now: float, timeouts: LivenessTimeouts, under_only: bool) -> Any:
    """Live blobs whose counted copies (as ``plan_repair`` counts them, roughly: not dead
    and not draining) differ from R, or that have a copy on a draining node."""
    not_dead = nodes.c.last_heartbeat > now - timeouts.dead_after
    alive = nodes.c.last_heartbeat > now - timeouts.suspect_after
    counted = func.sum(case((and_(not_dead, nodes.c.draining.is_(False)), 1), else_=0))
    draining = func.sum(case((and_(alive, nodes.c.draining.is_(True)), 1), else_=0))
    healthy = and_(replicas.c.blob_id == blobs.c.blob_id, replicas.c.quarantined.is_(False))
    condition = (
        counted < blobs.c.target if under_only else or_(counted != blobs.c.target, draining > 0)
    )
    return (
        select(blobs.c.blob_id, blobs.c.size, blobs.c.target)
        .select_from(
            blobs.outerjoin(replicas, healthy).outerjoin(
                nodes, nodes.c.node_id == replicas.c.node_id
            )
        )
        .where(_live())
        .group_by(blobs.c.blob_id, blobs.c.size, blobs.c.target)
        .having(condition)
    )


async def blobs_to_repair(
    conn: AsyncConnection, now: float, timeouts: LivenessTimeouts, limit: int = 10_000
) -> list[BlobReplicas]:
    query = _tally(now, timeouts, under_only=False).limit(limit)
    return await _with_holders(conn, list(await conn.execute(query)))


async def blobs_held_by(
    conn: AsyncConnection, node_ids: Sequence[str], per_node: int
) -> list[BlobReplicas]:
    """Live blobs with a healthy copy on each of ``node_ids`` (largest first, ``per_node``
    of each): what rebalancing may move off the fullest nodes."""
    found: dict[str, Any] = {}
    for node_id in node_ids:
        rows = await conn.execute(
            select(blobs.c.blob_id, blobs.c.size, blobs.c.target)
            .join(replicas, replicas.c.blob_id == blobs.c.blob_id)
            .where(replicas.c.node_id == node_id, replicas.c.quarantined.is_(False), _live())
            .order_by(blobs.c.size.desc())
            .limit(per_node)
        )
        found.update((row.blob_id, row) for row in rows)
    return await _with_holders(conn, list(found.values()))


async def _with_holders(conn: AsyncConnection, found: list[Any]) -> list[BlobReplicas]:
    """``(blob_id, size, target)`` rows with every healthy holder of each blob."""
    holders: dict[str, set[str]] = defaultdict(set)
    for start in range(0, len(found), _CHUNK):
        ids = [row.blob_id for row in found[start : start + _CHUNK]]
        rows = await conn.execute(
            select(replicas.c.blob_id, replicas.c.node_id).where(
                replicas.c.blob_id.in_(ids), replicas.c.quarantined.is_(False)
            )
        )
        for row in rows:
            holders[row.blob_id].add(row.node_id)
    return [
        BlobReplicas(
            blob_id=row.blob_id,
            size=row.size,
            replicas=frozenset(holders[row.blob_id]),
            target=max(1, row.target),
        )
        for row in found
    ]


async def doomed_copies(
    conn: AsyncConnection, now: float, timeouts: LivenessTimeouts, limit: int = 200
) -> list[tuple[str, str, str]]:
    """(blob, node, url) of copies of deleted or archived blobs on reachable nodes."""
    rows = await conn.execute(
        select(replicas.c.blob_id, replicas.c.node_id, nodes.c.url)
        .join(blobs, blobs.c.blob_id == replicas.c.blob_id)
        .join(nodes, nodes.c.node_id == replicas.c.node_id)
        .where(
            or_(blobs.c.deleted.is_(True), blobs.c.archived.is_(True)),
            nodes.c.last_heartbeat > now - timeouts.suspect_after,
        )
        .limit(limit)
    )
    return [(row.blob_id, row.node_id, row.url) for row in rows]


async def expired(conn: AsyncConnection, now: float, limit: int = 50) -> list[Any]:
    rows = await conn.execute(
        select(blobs.c.blob_id, blobs.c.size, blobs.c.archive_url)
        .where(_live(), blobs.c.pinned.is_(False), blobs.c.expires_at < now)
        .order_by(blobs.c.expires_at)
        .limit(limit)
    )
    return list(rows)


async def readable_holders(
    conn: AsyncConnection, blob_id: str, now: float, timeouts: LivenessTimeouts
) -> list[str]:
    """URLs of alive nodes with a healthy copy: archive sources."""
    rows = await conn.execute(
        select(nodes.c.url)
        .join(replicas, replicas.c.node_id == nodes.c.node_id)
        .where(
            replicas.c.blob_id == blob_id,
            replicas.c.quarantined.is_(False),
            nodes.c.last_heartbeat > now - timeouts.suspect_after,
        )
        .order_by(nodes.c.load)
    )
    return [row.url for row in rows]


async def retire(
    conn: AsyncConnection, blob_id: str, archive_url: str | None, stored: Any = None
) -> None:
    """Past retention: archived (copies dropped, restorable) or, without archive, deleted.
    ``stored``: the archived copy just written (its size and encoding are recorded)."""
    values: dict[str, Any] = (
        {"archived": True, "archive_url": archive_url, "restoring": False}
        if archive_url
        else {"deleted": True}
    )
    if stored is not None:
        values.update(archive_bytes=stored.stored_bytes, archive_encoding=stored.encoding)
    # A tombstone for every node (archived ones carry the archive's URL).
    values.update(deleted_at=time.time(), ledger_seq=await catalog.next_seq(conn))
    # Re-check retention in the update: an operator may have pinned it meanwhile.
    await conn.execute(
        update(blobs)
        .where(blobs.c.blob_id == blob_id, blobs.c.pinned.is_(False), _live())
        .values(**values)
    )


async def counts(conn: AsyncConnection, now: float, timeouts: LivenessTimeouts) -> dict[str, Any]:
    """Nodes by state and blobs by coarse status, for ``/v1/status`` and the gauges."""
    rows = await conn.execute(select(nodes.c.last_heartbeat))
    by_state = dict.fromkeys((state.value for state in NodeState), 0)
    for (last,) in rows:
        by_state[state_at(last, now, timeouts).value] += 1
    totals = (
        await conn.execute(
            select(
                func.count(),
                func.sum(case((blobs.c.deleted.is_(True), 1), else_=0)),
                func.sum(
                    case((and_(blobs.c.archived.is_(True), blobs.c.deleted.is_(False)), 1), else_=0)
                ),
            )
        )
    ).one()
    under = _tally(now, timeouts, under_only=True).subquery()
    under_replicated = (await conn.execute(select(func.count()).select_from(under))).scalar()
    # Lost (every copy quarantined) is its own state, not a shortage of copies.
    healthy = func.sum(case((replicas.c.quarantined.is_(False), 1), else_=0))
    lost_ids = (
        select(replicas.c.blob_id)
        .join(blobs, blobs.c.blob_id == replicas.c.blob_id)
        .where(_live())
        .group_by(replicas.c.blob_id)
        .having(healthy == 0)
        .subquery()
    )
    lost = int((await conn.execute(select(func.count()).select_from(lost_ids))).scalar() or 0)
    restoring = (
        await conn.execute(select(func.count()).where(blobs.c.restoring.is_(True), _live()))
    ).scalar()
    return {
        "archive": await archive_totals(conn),
        "nodes": by_state,
        "blobs": {
            "total": int(totals[0] or 0),
            "deleted": int(totals[1] or 0),
            "archived": int(totals[2] or 0),
            "under_replicated": max(0, int(under_replicated or 0) - lost),
            "lost": lost,
            "restoring": int(restoring or 0),
        },
    }


def _idle_days(default_days: float | None) -> Any:
    return func.coalesce(blobs.c.archive_after_days, default_days or 0.0)


def _idle(now: float, default_days: float | None) -> Any:
    """Live blobs an operator asked to archive, or unused for longer than their period
    (their own ``archive_after_days``, else the cluster's; 0: never)."""
    days = _idle_days(default_days)
    used = func.coalesce(blobs.c.last_access, blobs.c.created_at)
    return and_(
        _live(),
        or_(blobs.c.archive_now.is_(True), and_(days > 0, used + days * 86400.0 < now)),
    )


async def target_of(conn: AsyncConnection, blob_id: str) -> int:
    found = await conn.execute(select(blobs.c.target).where(blobs.c.blob_id == blob_id))
    return int(found.scalar() or 1)


async def idle(
    conn: AsyncConnection, now: float, default_days: float | None, limit: int = 50
) -> list[Any]:
    rows = await conn.execute(
        select(
            blobs.c.blob_id,
            blobs.c.size,
            blobs.c.archive_url,
            blobs.c.archive_bytes,
            blobs.c.archive_encoding,
        )
        .where(_idle(now, default_days))
        .order_by(func.coalesce(blobs.c.last_access, blobs.c.created_at))
        .limit(limit)
    )
    return list(rows)


async def archive_idle(
    conn: AsyncConnection,
    blob_id: str,
    stored: Any,
    now: float,
    default_days: float | None,
) -> bool:
    """Record the archived copy (``stored``: url, stored bytes, encoding) and, if the blob
    is still idle (nobody read it meanwhile), mark it archived: its copies become doomed.
    Whether it was archived."""
    await conn.execute(
        update(blobs)
        .where(blobs.c.blob_id == blob_id, _live())
        .values(
            archive_url=stored.url,
            archive_bytes=stored.stored_bytes,
            archive_encoding=stored.encoding,
        )
    )
    seq = await catalog.next_seq(conn)
    done = await conn.execute(
        update(blobs)
        .where(blobs.c.blob_id == blob_id, _idle(now, default_days))
        .values(
            archived=True,
            archive_now=False,
            restoring=False,
            deleted_at=time.time(),
            ledger_seq=seq,
        )
    )
    return bool(done.rowcount)


async def archives_to_purge(conn: AsyncConnection, limit: int = 50) -> list[Any]:
    """Deleted blobs whose archived copy is still there (removed by the leader)."""
    rows = await conn.execute(
        select(blobs.c.blob_id, blobs.c.archive_url)
        .where(blobs.c.deleted.is_(True), blobs.c.archive_url.is_not(None))
        .limit(limit)
    )
    return list(rows)


async def archive_purged(conn: AsyncConnection, blob_id: str) -> None:
    await conn.execute(
        update(blobs)
        .where(blobs.c.blob_id == blob_id, blobs.c.deleted.is_(True))
        .values(archive_url=None, archive_bytes=None, archive_encoding=None)
    )


async def archive_totals(conn: AsyncConnection) -> dict[str, int]:
    """Archived blobs, what they take in the archive, and the space saved: the R copies
    they no longer occupy on nodes minus their archived objects."""
    archived = and_(blobs.c.archived.is_(True), blobs.c.deleted.is_(False))
    row = (
        await conn.execute(
            select(
                func.count(),
                func.coalesce(func.sum(blobs.c.size), 0),
                func.coalesce(func.sum(blobs.c.size * blobs.c.target), 0),
                func.coalesce(func.sum(func.coalesce(blobs.c.archive_bytes, blobs.c.size)), 0),
            ).where(archived)
        )
    ).one()
    return {
        "blobs": int(row[0]),
        "bytes": int(row[1]),
        "archive_bytes": int(row[3]),
        "saved_bytes": int(row[2]) - int(row[3]),
    }

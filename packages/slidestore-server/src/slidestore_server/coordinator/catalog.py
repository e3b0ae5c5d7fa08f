"""Blobs: their target R, retention, owners, and where their copies are (SQL).

A blob row is created when a node first reports holding it (the upload committed), from
the placements recorded for it, or adopted pinned with the default R when no placement
matches (blobs written before the coordinator existed, or by hand).

Several clients may place the same content before it lands. Each placement is a wish of
its own client, so none may weaken another's: the blob gets the strongest of them (the
largest R, pinned if any asked, the latest expiry) and every one of those clients becomes
an owner. A stranger's placement with one replica and a 20 s expiry therefore cannot make
the victim's upload short-lived.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import bindparam, case, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from slidestore.cluster import LivenessTimeouts, NodeState, state_at
from slidestore.cluster.wire import BlobRef, BlobStatus, BlobView, ReplicaView, Retention
from slidestore.errors import BlobNotFound
from slidestore_server.coordinator.db import upsert
from slidestore_server.coordinator.schema import (
    blobs,
    changes,
    nodes,
    owners,
    placements,
    replicas,
)

#: Placements not committed after this long are forgotten (the node's upload expiry).
PLACEMENT_TTL = 24 * 3600.0


_INSERT_PLACEMENT = placements.insert()


async def record_placement(
    conn: AsyncConnection,
    *,
    blob_id: str | None,
    primary: str,
    size: int,
    target: int,
    expires_at: float | None,
    now: float,
    owner: str,
) -> None:
    await conn.execute(
        _INSERT_PLACEMENT,
        {
            "blob_id": blob_id,
            "primary_node": primary,
            "size": size,
            "target": target,
            "pinned": expires_at is None,
            "expires_at": expires_at,
            "created_at": now,
            "owner": owner,
        },
    )


async def adopt(
    conn: AsyncConnection, node_id: str, refs: Sequence[BlobRef], now: float, default_target: int
) -> None:
    """Create the rows of blobs reported for the first time, consuming their placements.

    A deleted or archived blob comes back only through a new placement (someone uploaded
    it again); otherwise its reported copy stays doomed and the leader deletes it.
    """
    if not refs:
        return
    ids = [ref.blob_id for ref in refs]
    known = {
        row.blob_id: row
        for row in await conn.execute(
            select(blobs.c.blob_id, blobs.c.deleted, blobs.c.archived).where(
                blobs.c.blob_id.in_(ids)
            )
        )
    }
    fresh = [ref for ref in refs if ref.blob_id not in known or _gone(known[ref.blob_id])]
    if not fresh:
        return
    pending = list(
        await conn.execute(
            select(placements)
            .where(
                or_(
                    placements.c.blob_id.in_([ref.blob_id for ref in fresh]),
                    placements.c.primary_node == node_id,
                )
            )
            .order_by(placements.c.id)
        )
    )
    for ref in fresh:
        # Every placement this commit may answer: those naming its content, and those
        # without a sha256 for this primary and size (which of them it was, nobody knows).
        matches = [p for p in pending if p.blob_id == ref.blob_id] + [
            p for p in pending if p.blob_id is None and p.size == ref.size
        ]
        if matches:
            for match in matches:
                pending.remove(match)
            await conn.execute(
                delete(placements).where(placements.c.id.in_([m.id for m in matches]))
            )
            values = strongest(matches)
        elif ref.blob_id in known:
            continue
        else:
            values = {"target": default_target, "pinned": True, "expires_at": None}
        values.update(size=ref.size, archived=False, deleted=False, created_at=now)
        stmt = upsert(conn, blobs).values(blob_id=ref.blob_id, archive_url=None, **values)
        await conn.execute(stmt.on_conflict_do_update(index_elements=["blob_id"], set_=values))
        claims = sorted({m.owner for m in matches if m.owner})
        if claims:
            stmt = upsert(conn, owners).values(
                [{"blob_id": ref.blob_id, "owner": o} for o in claims]
            )
            await conn.execute(stmt.on_conflict_do_nothing(index_elements=["blob_id", "owner"]))


def strongest(wishes: Sequence[Any]) -> dict[str, Any]:
    """The retention and R that honour every placement in ``wishes``."""
    pinned = any(w.pinned or w.expires_at is None for w in wishes)
    return {
        "target": max(w.target for w in wishes),
        "pinned": pinned,
        "expires_at": None if pinned else max(w.expires_at for w in wishes),
    }


def _gone(row: Any) -> bool:
    return bool(row.deleted or row.archived)


async def forget_old_placements(conn: AsyncConnection, now: float) -> None:
    await conn.execute(delete(placements).where(placements.c.created_at < now - PLACEMENT_TTL))


#: Built once: constructing a select and its cache key costs more than running it, and
#: placement asks this on every request.
_HAS_COPY = (
    select(replicas.c.node_id)
    .join(blobs, blobs.c.blob_id == replicas.c.blob_id)
    .join(nodes, nodes.c.node_id == replicas.c.node_id)
    .where(
        replicas.c.blob_id == bindparam("blob_id"),
        replicas.c.quarantined.is_(False),
        blobs.c.deleted.is_(False),
        blobs.c.archived.is_(False),
        nodes.c.last_heartbeat > bindparam("alive_since"),
    )
    .limit(1)
)


async def has_copy(conn: AsyncConnection, blob_id: str, now: float, dead_after: float) -> bool:
    """Whether a live blob has a healthy copy on a node that is not dead."""
    row = await conn.execute(_HAS_COPY, {"blob_id": blob_id, "alive_since": now - dead_after})
    return row.first() is not None


async def view(
    conn: AsyncConnection, blob_id: str, now: float, timeouts: LivenessTimeouts
) -> BlobView | None:
    blob = (await conn.execute(select(blobs).where(blobs.c.blob_id == blob_id))).first()
    if blob is None:
        return None
    rows = await conn.execute(
        select(nodes.c.node_id, nodes.c.url, nodes.c.last_heartbeat, nodes.c.draining)
        .join(replicas, replicas.c.node_id == nodes.c.node_id)
        .where(replicas.c.blob_id == blob_id, replicas.c.quarantined.is_(False))
    )
    copies = []
    counted = 0
    for row in rows:
        state = state_at(row.last_heartbeat, now, timeouts)
        if state is NodeState.DEAD:
            continue
        copies.append(ReplicaView(node_id=row.node_id, url=row.url, state=state))
        # Counted as in repair planning: draining copies are readable but on their way out.
        counted += state is NodeState.SUSPECT or not row.draining
    copies.sort(key=lambda r: (r.state is not NodeState.ALIVE, r.node_id))
    if blob.deleted:
        status = BlobStatus.DELETED
    elif blob.archived:
        status = BlobStatus.ARCHIVED
    elif not copies and await lost(conn, [blob_id]):
        status = BlobStatus.LOST
    elif not any(r.state is NodeState.ALIVE for r in copies):
        status = BlobStatus.UNAVAILABLE
    elif counted < blob.target:
        status = BlobStatus.UNDER_REPLICATED
    else:
        status = BlobStatus.OK
    return BlobView(
        blob_id=blob.blob_id,
        size=blob.size,
        target=blob.target,
        replicas=tuple(copies) if not (blob.deleted or blob.archived) else (),
        status=status,
        pinned=blob.pinned,
        expires_at=blob.expires_at,
        archive_url=blob.archive_url,
    )


async def lost(conn: AsyncConnection, blob_ids: Iterable[str]) -> list[str]:
    """Those of ``blob_ids`` (live blobs) whose every known copy is quarantined."""
    ids = list(blob_ids)
    if not ids:
        return []
    healthy = func.sum(case((replicas.c.quarantined.is_(False), 1), else_=0))
    rows = await conn.execute(
        select(replicas.c.blob_id)
        .join(blobs, blobs.c.blob_id == replicas.c.blob_id)
        .where(
            replicas.c.blob_id.in_(ids),
            blobs.c.deleted.is_(False),
            blobs.c.archived.is_(False),
        )
        .group_by(replicas.c.blob_id)
        .having(healthy == 0)
    )
    return sorted(row.blob_id for row in rows)


async def _require(conn: AsyncConnection, blob_id: str) -> Any:
    row = (await conn.execute(select(blobs).where(blobs.c.blob_id == blob_id))).first()
    if row is None:
        raise BlobNotFound(f"the cluster has no blob {blob_id}")
    return row


async def mark_deleted(conn: AsyncConnection, blob_id: str) -> list[tuple[str, str]]:
    """Mark deleted (repair never copies it again); return (node id, url) of its holders."""
    await _require(conn, blob_id)
    await conn.execute(update(blobs).where(blobs.c.blob_id == blob_id).values(deleted=True))
    await conn.execute(delete(owners).where(owners.c.blob_id == blob_id))
    await bump(conn)
    # Forget pending placements too, so a late commit of the same upload stays deleted.
    await conn.execute(delete(placements).where(placements.c.blob_id == blob_id))
    rows = await conn.execute(
        select(nodes.c.node_id, nodes.c.url)
        .join(replicas, replicas.c.node_id == nodes.c.node_id)
        .where(replicas.c.blob_id == blob_id)
    )
    return [(row.node_id, row.url) for row in rows]


async def drop_claim(conn: AsyncConnection, blob_id: str, owner: str) -> bool:
    """Remove ``owner``'s claim on a blob; whether that was the last claim (the blob is
    then to be deleted). A client that holds no claim drops nothing: it never placed the
    blob (it only knew its sha256), or an operator adopted it."""
    await _require(conn, blob_id)
    dropped = await conn.execute(
        delete(owners).where(owners.c.blob_id == blob_id, owners.c.owner == owner)
    )
    if not dropped.rowcount:
        return False
    left = await conn.execute(select(owners.c.owner).where(owners.c.blob_id == blob_id).limit(1))
    return left.first() is None


async def set_retention(conn: AsyncConnection, blob_id: str, retention: Retention) -> None:
    await _require(conn, blob_id)
    pinned = retention.pinned or retention.expires_at is None
    await conn.execute(
        update(blobs)
        .where(blobs.c.blob_id == blob_id)
        .values(pinned=pinned, expires_at=retention.expires_at)
    )
    await bump(conn)


async def restore(conn: AsyncConnection, blob_id: str, retention: Retention) -> Any:
    """Un-archive: the leader copies it back from ``archive_url`` and repair adds R."""
    row = await _require(conn, blob_id)
    if row.archive_url is None or row.deleted:
        return None
    await conn.execute(
        update(blobs)
        .where(blobs.c.blob_id == blob_id)
        .values(
            archived=False,
            pinned=retention.pinned or retention.expires_at is None,
            expires_at=retention.expires_at,
        )
    )
    await bump(conn)
    return row


async def archive_urls(conn: AsyncConnection, blob_ids: Sequence[str]) -> dict[str, str]:
    rows = await conn.execute(
        select(blobs.c.blob_id, blobs.c.archive_url).where(
            blobs.c.blob_id.in_(blob_ids), blobs.c.archive_url.is_not(None)
        )
    )
    return {row.blob_id: row.archive_url for row in rows}


async def bump(conn: AsyncConnection) -> None:
    """Something the repair loop must look at changed (see ``schema.changes``)."""
    await conn.execute(update(changes).where(changes.c.id == 1).values(serial=changes.c.serial + 1))


async def change_serial(conn: AsyncConnection) -> int:
    return int(
        (await conn.execute(select(changes.c.serial).where(changes.c.id == 1))).scalar() or 0
    )

"""What each node is sent to keep for a rebuild: the policies of the blobs it holds and
every tombstone (``docs/cluster.md``, "Rebuilding the database").

A node follows ``blobs.ledger_seq`` with a cursor it echoes in every heartbeat
(``Heartbeat.ledger_seq``; a registration starts from 0): each answer carries the rows
changed since, and the new cursor. The coordinator keeps no per-node state for it, so a
lost answer only means the same rows go out again. A heartbeat whose cursor is already
the current serial costs one primary-key read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from slidestore.cluster.wire import BlobPolicy, LedgerUpdate, Tombstone
from slidestore_server.coordinator import catalog
from slidestore_server.coordinator.schema import blobs, owners, replicas

_CHUNK = 500


async def update_for(
    conn: AsyncConnection, node_id: str, seen: int, added: Iterable[str] = ()
) -> LedgerUpdate | None:
    """Rows changed after ``seen`` (policies of blobs this node holds, every tombstone),
    plus the policies of ``added`` (copies it just reported, whatever their age)."""
    serial = await catalog.change_serial(conn)
    if seen > serial:
        seen = 0  # a cursor from another database (this one was rebuilt): start over
    added = list(added)
    if seen >= serial and not added:
        return None
    window = and_(blobs.c.ledger_seq > seen, blobs.c.ledger_seq <= serial)
    live = and_(blobs.c.deleted.is_(False), blobs.c.archived.is_(False))
    rows: dict[str, Any] = {}
    if seen < serial:
        # Driven by the (indexed, narrow) window, not by every copy the node holds.
        on_node = (
            select(replicas.c.blob_id)
            .where(replicas.c.blob_id == blobs.c.blob_id, replicas.c.node_id == node_id)
            .exists()
        )
        held = select(blobs).where(window, live, on_node)
        rows.update((row.blob_id, row) for row in await conn.execute(held))
    for start in range(0, len(added), _CHUNK):
        chunk = added[start : start + _CHUNK]
        found = await conn.execute(select(blobs).where(blobs.c.blob_id.in_(chunk), live))
        rows.update((row.blob_id, row) for row in found)
    tombstones: list[Tombstone] = []
    if seen < serial:
        gone = select(blobs).where(or_(blobs.c.deleted.is_(True), blobs.c.archived.is_(True)))
        tombstones = [
            Tombstone(
                blob_id=row.blob_id,
                deleted_at=row.deleted_at or 0.0,
                size=row.size,
                archive_url=row.archive_url if row.archived else None,
            )
            for row in await conn.execute(gone.where(window).order_by(blobs.c.ledger_seq))
            if row.deleted_at is not None
        ]
    claims = await _owners(conn, list(rows))
    policies = tuple(policy(row, claims.get(row.blob_id, ())) for row in rows.values())
    return LedgerUpdate(seq=max(seen, serial), policies=policies, tombstones=tuple(tombstones))


def policy(row: Any, claims: Sequence[str]) -> BlobPolicy:
    return BlobPolicy(
        blob_id=row.blob_id,
        target=row.target,
        pinned=row.pinned,
        expires_at=row.expires_at,
        created_at=row.created_at,
        changed_at=row.policy_at or row.created_at,
        owners=tuple(sorted(claims)),
    )


async def _owners(conn: AsyncConnection, blob_ids: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for start in range(0, len(blob_ids), _CHUNK):
        chunk = blob_ids[start : start + _CHUNK]
        rows = await conn.execute(
            select(owners.c.blob_id, owners.c.owner).where(owners.c.blob_id.in_(chunk))
        )
        for row in rows:
            found[row.blob_id].append(row.owner)
    return found

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

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, case, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from slidestore.cluster import LivenessTimeouts, NodeState, state_at
from slidestore.cluster.wire import (
    BlobPolicy,
    BlobRef,
    BlobStatus,
    BlobView,
    ReplicaView,
    Retention,
    Tombstone,
)
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

_CHUNK = 500  # ids per IN (...) list: far below SQLite's and asyncpg's parameter limits
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
    conn: AsyncConnection,
    node_id: str,
    refs: Sequence[BlobRef],
    now: float,
    default_target: int,
    policies: Mapping[str, BlobPolicy] | None = None,
) -> None:
    """Create the rows of blobs reported for the first time, consuming their placements.

    A deleted or archived blob comes back only through a new placement (someone uploaded
    it again), or a policy a holder reports that was set after the deletion (it was
    uploaded again before this database was lost); otherwise its reported copy stays
    doomed and the leader deletes it. Without a placement, a blob takes the policy its
    holder reports (rebuilding a lost database), else it is adopted pinned at the default R.
    """
    if not refs:
        return
    policies = policies or {}
    # The serial first: its row lock orders this against other registrations, so the
    # rows read next include whatever a concurrent one buried or adopted (PostgreSQL).
    seq = await next_seq(conn)
    ids = [ref.blob_id for ref in refs]
    known = {
        row.blob_id: row
        for row in await conn.execute(
            select(
                blobs.c.blob_id,
                blobs.c.deleted,
                blobs.c.archived,
                blobs.c.deleted_at,
                blobs.c.policy_at,
            ).where(blobs.c.blob_id.in_(ids))
        )
    }
    await _newer_policies(conn, known, policies, now, seq)
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
        claims = sorted({m.owner for m in matches if m.owner})
        policy = policies.get(ref.blob_id)
        values: dict[str, Any]
        if matches:
            for match in matches:
                pending.remove(match)
            await conn.execute(
                delete(placements).where(placements.c.id.in_([m.id for m in matches]))
            )
            values = {**strongest(matches), "created_at": now, "policy_at": now}
        elif policy is not None and _outlives(policy, known.get(ref.blob_id)):
            values = _policy_values(policy, now)
            claims = sorted(set(policy.owners))
        elif ref.blob_id in known:
            continue
        else:
            values = {
                "target": default_target,
                "pinned": True,
                "expires_at": None,
                "created_at": now,
                "policy_at": now,
            }
        values.update(size=ref.size, archived=False, deleted=False, deleted_at=None, ledger_seq=seq)
        stmt = upsert(conn, blobs).values(blob_id=ref.blob_id, archive_url=None, **values)
        await conn.execute(stmt.on_conflict_do_update(index_elements=["blob_id"], set_=values))
        await _add_owners(conn, ref.blob_id, claims)


def _outlives(policy: BlobPolicy, row: Any) -> bool:
    """Whether a reported policy may (re)create the blob: no row, or a deletion older than
    the policy (the content was stored again after it)."""
    return row is None or (row.deleted_at is not None and policy.changed_at > row.deleted_at)


def _policy_values(policy: BlobPolicy, now: float) -> dict[str, Any]:
    pinned = policy.pinned or policy.expires_at is None
    return {
        "target": max(1, policy.target),
        "pinned": pinned,
        "expires_at": None if pinned else policy.expires_at,
        "created_at": policy.created_at or now,
        "policy_at": policy.changed_at or now,
    }


async def _newer_policies(
    conn: AsyncConnection,
    known: Mapping[str, Any],
    policies: Mapping[str, BlobPolicy],
    now: float,
    seq: int,
) -> None:
    """Live rows whose holder reports a policy set after the row's: a database rebuilt
    from a node that was away when R or retention last changed takes the newer one."""
    newer = [
        policies[blob_id]
        for blob_id, row in known.items()
        if blob_id in policies
        and not _gone(row)
        and policies[blob_id].changed_at > (row.policy_at or 0.0)
    ]
    for policy in newer:
        values = _policy_values(policy, now)
        await conn.execute(
            update(blobs).where(blobs.c.blob_id == policy.blob_id).values(**values, ledger_seq=seq)
        )
        await _add_owners(conn, policy.blob_id, sorted(set(policy.owners)))


async def _add_owners(conn: AsyncConnection, blob_id: str, claims: Sequence[str]) -> None:
    if claims:
        stmt = upsert(conn, owners).values([{"blob_id": blob_id, "owner": o} for o in claims])
        await conn.execute(stmt.on_conflict_do_nothing(index_elements=["blob_id", "owner"]))


async def learn_tombstones(conn: AsyncConnection, tombstones: Sequence[Tombstone]) -> None:
    """Deletions a registering node remembers. Unknown blobs get a deleted (or archived)
    row, so a copy that turns up later is deleted, not adopted; a live row whose policy
    predates the deletion is deleted now (the database was rebuilt from a holder that
    was away when it was deleted). A live row set after it (stored again since) stays."""
    if not tombstones:
        return
    seq = await next_seq(conn)  # first, as in adopt: registrations take turns from here
    by_id = {t.blob_id: t for t in tombstones}
    rows: dict[str, Any] = {}
    ids = list(by_id)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        found = await conn.execute(
            select(blobs.c.blob_id, blobs.c.deleted, blobs.c.archived, blobs.c.policy_at).where(
                blobs.c.blob_id.in_(chunk)
            )
        )
        rows.update((row.blob_id, row) for row in found)
    buried = [
        t
        for t in tombstones
        if t.blob_id not in rows
        or (not _gone(rows[t.blob_id]) and (rows[t.blob_id].policy_at or 0.0) <= t.deleted_at)
    ]
    for t in buried:
        values: dict[str, Any] = {
            "deleted": t.archive_url is None,
            "archived": t.archive_url is not None,
            "archive_url": t.archive_url,
            "deleted_at": t.deleted_at,
            "ledger_seq": seq,
        }
        if t.blob_id in rows:
            await conn.execute(update(blobs).where(blobs.c.blob_id == t.blob_id).values(values))
            await conn.execute(delete(owners).where(owners.c.blob_id == t.blob_id))
            await conn.execute(delete(placements).where(placements.c.blob_id == t.blob_id))
        else:
            # Do nothing on conflict: another node's registration may bury it at once.
            stmt = upsert(conn, blobs).values(
                blob_id=t.blob_id,
                size=t.size,
                target=1,
                pinned=True,
                expires_at=None,
                created_at=t.deleted_at,
                policy_at=None,
                **values,
            )
            await conn.execute(stmt.on_conflict_do_nothing(index_elements=["blob_id"]))


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
    elif blob.restoring and counted < blob.target:
        status = BlobStatus.RESTORING
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
        last_access=blob.last_access,
        archive_after_days=blob.archive_after_days,
        archive_bytes=blob.archive_bytes,
        archive_encoding=blob.archive_encoding,
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
    seq = await next_seq(conn)
    # Not archived any more: the nodes' tombstone says deleted, and the archived copy
    # (archive_url stays until then) is removed by the retention loop (lifecycle.py).
    await conn.execute(
        update(blobs)
        .where(blobs.c.blob_id == blob_id)
        .values(deleted=True, archived=False, deleted_at=time.time(), ledger_seq=seq)
    )
    await conn.execute(delete(owners).where(owners.c.blob_id == blob_id))
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
    await next_seq(conn)  # before any row (lock order, see next_seq)
    dropped = await conn.execute(
        delete(owners).where(owners.c.blob_id == blob_id, owners.c.owner == owner)
    )
    if not dropped.rowcount:
        return False
    left = await conn.execute(select(owners.c.owner).where(owners.c.blob_id == blob_id).limit(1))
    if left.first() is None:
        return True
    await _policy_changed(conn, blob_id)  # the holders' copy of the owners changes
    return False


async def _policy_changed(conn: AsyncConnection, blob_id: str, **values: Any) -> None:
    """Update the row (``values``) as a new policy the holders are sent."""
    seq = await next_seq(conn)
    await conn.execute(
        update(blobs)
        .where(blobs.c.blob_id == blob_id)
        .values(**values, policy_at=time.time(), ledger_seq=seq)
    )


async def set_retention(conn: AsyncConnection, blob_id: str, retention: Retention) -> None:
    await _require(conn, blob_id)
    pinned = retention.pinned or retention.expires_at is None
    await _policy_changed(conn, blob_id, pinned=pinned, expires_at=retention.expires_at)


async def restore(conn: AsyncConnection, blob_id: str, retention: Retention, now: float) -> Any:
    """Un-archive: the leader copies it back from ``archive_url`` and repair adds R; the
    blob is ``restoring`` until it has R copies. ``now`` (the retention clock) counts as
    its last access, so it is not idle again at once."""
    row = await _require(conn, blob_id)
    if row.archive_url is None or row.deleted:
        return None
    if not row.archived:
        return row  # already live (or coming back): nothing to do
    await _policy_changed(
        conn,
        blob_id,
        archived=False,
        restoring=True,
        archive_now=False,
        last_access=now,
        pinned=retention.pinned or retention.expires_at is None,
        expires_at=retention.expires_at,
    )
    return row


async def finish_restore(conn: AsyncConnection, blob_id: str) -> None:
    """After a copy: a restoring blob with R healthy copies is restored."""
    healthy = (
        select(func.count())
        .select_from(replicas)
        .where(replicas.c.blob_id == blobs.c.blob_id, replicas.c.quarantined.is_(False))
        .scalar_subquery()
    )
    await conn.execute(
        update(blobs)
        .where(blobs.c.blob_id == blob_id, blobs.c.restoring.is_(True), healthy >= blobs.c.target)
        .values(restoring=False)
    )


async def record_access(conn: AsyncConnection, blob_ids: Sequence[str], now: float) -> None:
    """Blobs a node served to someone since its last heartbeat (``Heartbeat.accessed``):
    one UPDATE per chunk of ids, whatever the number of tiles behind them."""
    ids = sorted(blob_ids)
    for start in range(0, len(ids), _CHUNK):
        await conn.execute(
            update(blobs)
            .where(blobs.c.blob_id.in_(ids[start : start + _CHUNK]))
            .values(last_access=now)
        )


async def set_lifecycle(conn: AsyncConnection, blob_id: str, days: float | None) -> None:
    await _require(conn, blob_id)
    await conn.execute(
        update(blobs).where(blobs.c.blob_id == blob_id).values(archive_after_days=days)
    )


async def request_archive(conn: AsyncConnection, blob_id: str) -> Any:
    """An operator's ``POST /v1/blobs/{id}/archive``: the leader archives it next pass."""
    row = await _require(conn, blob_id)
    if not (row.deleted or row.archived):
        await conn.execute(update(blobs).where(blobs.c.blob_id == blob_id).values(archive_now=True))
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


async def next_seq(conn: AsyncConnection) -> int:
    """Bump the change serial and return it: the ``ledger_seq`` of rows this transaction
    changes. The bump locks the ``changes`` row until commit, so such transactions commit
    in serial order, and a node's cursor never skips a row committed later. Take it before
    writing any blob or owner row: with every writer locking the serial first, two of them
    never wait on each other's rows in a circle (PostgreSQL would abort one)."""
    result = await conn.execute(
        update(changes)
        .where(changes.c.id == 1)
        .values(serial=changes.c.serial + 1)
        .returning(changes.c.serial)
    )
    return int(result.scalar_one())


async def forget_old_tombstones(conn: AsyncConnection, before: float) -> None:
    """Deleted rows older than the tombstone period, once no copy is on record."""
    held = select(replicas.c.blob_id).where(replicas.c.blob_id == blobs.c.blob_id).exists()
    await conn.execute(
        delete(blobs).where(blobs.c.deleted.is_(True), blobs.c.deleted_at < before, ~held)
    )


async def change_serial(conn: AsyncConnection) -> int:
    return int(
        (await conn.execute(select(changes.c.serial).where(changes.c.id == 1))).scalar() or 0
    )

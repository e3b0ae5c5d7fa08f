"""Carrying out ``slidestore.cluster.plan_rebalance`` (``SLIDESTORE_REBALANCE=true``).

Rebalancing yields to everything else: a round starts only when the last repair scan
found nothing to do and no repair copy or trim runs, when no node is suspect, when the
previous round's moves have all finished and fresh heartbeats have reported the fill they
left (two heartbeat intervals later). Its copies carry their own bandwidth cap.

A move is a repair-style copy to the receiver followed, in one transaction, by recording
the new replica and dropping the donor's, and only then a DELETE on the donor. The donor's
copy is dropped only if the blob keeps R copies on alive, non-draining nodes without it;
otherwise it stays (a surplus that repair trims once things settle). While a move runs the
repair planner sees it as a copy in flight, so it neither trims the blob nor adds to it.

A receiver that answers 507 is remembered in the coordinator's refusals, the memory
placement and repair use: until it reports more room (or the memory runs out) it is left
out of rebalancing altogether — neither asked again nor counted in the mean fill (its
figures are what just proved wrong), nor drained as a donor on their strength.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from slidestore.cluster import (
    CopyTask,
    NodeInfo,
    NodeState,
    fill,
    fill_spread,
    plan_rebalance,
)
from slidestore.cluster.wire import Replicate
from slidestore_server.coordinator import catalog, registry, worklist
from slidestore_server.coordinator.nodes import NodeCallFailed
from slidestore_server.coordinator.schema import blobs, nodes, replicas
from slidestore_server.coordinator.state import Coordinator

log = logging.getLogger("slidestore.coordinator.rebalance")

#: Candidate blobs read per donor node each round: plenty for a few moves.
CANDIDATES_PER_NODE = 200
#: Donor nodes (the fullest) whose blobs are read each round.
DONORS = 3
#: After a round that found no worthwhile move, seconds before the next look.
IDLE_SECONDS = 10.0


class Rebalancer:
    def __init__(self, coord: Coordinator) -> None:
        self.coord = coord
        self.in_flight: dict[str, CopyTask] = {}  # blob -> move
        self.settle_until = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.coord.settings.rebalance

    def ready(self) -> bool:
        """No move running and the last round's results reported: a round may start."""
        return not self.in_flight and self.coord.now() >= self.settle_until

    async def run_pass(self, nodes: list[NodeInfo]) -> None:
        coord = self.coord
        settings = coord.settings
        if not self.ready():
            return
        if any(node.state is NodeState.SUSPECT for node in nodes):
            return  # figures are about to change; wait for a clear picture
        nodes = coord.refusals.without(nodes, coord.now())  # just answered 507: not now
        if fill_spread(nodes) <= settings.rebalance_tolerance:
            return
        eligible = [node for node in nodes if node.accepts_placements]
        donors = sorted(eligible, key=fill, reverse=True)[:DONORS]
        async with coord.engine.connect() as conn:
            candidates = await worklist.blobs_held_by(
                conn, [node.node_id for node in donors], CANDIDATES_PER_NODE
            )
        plan = plan_rebalance(
            candidates,
            nodes,
            max_moves=settings.rebalance_max_copies,
            tolerance=settings.rebalance_tolerance,
        )
        if not plan:
            # Level as far as whole blobs allow: look again later, not every pass.
            self.settle_until = coord.now() + IDLE_SECONDS
            return
        by_id = {node.node_id: node for node in nodes}
        for move in plan:
            self.in_flight[move.blob_id] = move
            task = asyncio.ensure_future(self._move(move, by_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _move(self, move: CopyTask, by_id: dict[str, NodeInfo]) -> None:
        coord = self.coord
        source, target = by_id[move.source], by_id[move.target]
        order = Replicate(
            blob_id=move.blob_id,
            size=move.size,
            source_url=source.url,
            bytes_per_second=coord.settings.rebalance_bytes_per_second,
        )
        try:
            await coord.nodes.replicate(target.url, order)
            async with coord.engine.begin() as conn:
                await registry.add_replica(conn, move.blob_id, move.target)
                dropped = await self._drop_donor(conn, move)
            if dropped:
                await coord.nodes.delete(source.url, move.blob_id)
            coord.metrics.moves.labels("ok").inc()
            coord.metrics.bytes_moved.inc(move.size)
            log.info(
                "moved",
                extra={"blob_id": move.blob_id, "source": move.source, "target": move.target},
            )
        except Exception as exc:
            if isinstance(exc, NodeCallFailed) and exc.status == 507:
                coord.refusals.refused(target, coord.now())  # the receiver is full
            coord.metrics.moves.labels("failed").inc()
            log.warning("move failed: %s", exc, extra={"blob_id": move.blob_id})
        finally:
            self.in_flight.pop(move.blob_id, None)
            if not self.in_flight:
                self.settle_until = coord.now() + 2 * coord.settings.heartbeat_interval

    async def _drop_donor(self, conn: AsyncConnection, move: CopyTask) -> bool:
        """Drop the donor's replica row if R safe copies remain without it."""
        coord = self.coord
        now = coord.now()
        safe = await conn.execute(
            select(func.count())
            .select_from(replicas.join(nodes, nodes.c.node_id == replicas.c.node_id))
            .where(
                replicas.c.blob_id == move.blob_id,
                replicas.c.node_id != move.source,
                replicas.c.quarantined.is_(False),
                nodes.c.draining.is_(False),
                nodes.c.last_heartbeat > now - coord.timeouts.suspect_after,
            )
        )
        target = await conn.execute(select(blobs.c.target).where(blobs.c.blob_id == move.blob_id))
        wanted = target.scalar()
        if wanted is None or (safe.scalar() or 0) < wanted:
            return False
        await registry.drop_replica(conn, move.blob_id, move.source)
        await catalog.bump(conn)
        return True

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

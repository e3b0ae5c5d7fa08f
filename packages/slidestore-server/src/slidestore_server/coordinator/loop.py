"""The coordinator's loop: every coordinator checks for leadership each pass; only the
leader records liveness transitions, repairs, and applies retention (docs/cluster.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time

from slidestore_server.coordinator import catalog, registry, worklist
from slidestore_server.coordinator.rebalance import Rebalancer
from slidestore_server.coordinator.repair import Repairer
from slidestore_server.coordinator.retention import Retention
from slidestore_server.coordinator.state import Coordinator

log = logging.getLogger("slidestore.coordinator.loop")

#: Seconds between refreshes of the status gauges (a few aggregate queries).
GAUGE_INTERVAL = 5.0
#: The leader scans every blob at least this often even when nothing reported a change.
FULL_SCAN_SECONDS = 10.0
#: How often the leader forgets tombstones past ``tombstone_days``.
TOMBSTONE_SWEEP_SECONDS = 600.0


class Loop:
    def __init__(self, coord: Coordinator) -> None:
        self.coord = coord
        self.rebalancer = Rebalancer(coord)
        self.repairer = Repairer(coord, moving=self.rebalancer.in_flight)
        self.retention = Retention(coord)
        self._gauges_at = 0.0
        self._serial: int | None = None
        self._scanned_at = 0.0
        self._held_term: str | None = None
        self._tombstones_at = -math.inf

    async def run(self) -> None:
        coord = self.coord
        while True:
            try:
                leading = await self._lead()
                coord.metrics.leader.set(1 if leading else 0)
                if leading and coord.leadership.term != self._held_term:
                    # A new term only: the same coordinator taking the lock back after a
                    # reconnect has been watching the nodes all along.
                    self._held_term = coord.leadership.term
                    self.repairer.hold()
                if leading:
                    await self.leader_pass()
                if coord.identity.lost is None:
                    await self._refresh_gauges()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("coordinator pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(coord.wake.wait(), coord.settings.loop_interval)
            coord.wake.clear()

    async def _lead(self) -> bool:
        """Whether to lead this pass: never on a database that is not ours any more."""
        coord = self.coord
        if coord.identity.lost is None and await coord.identity.check() is not None:
            log.error(
                "stopped leading: %s; restart the coordinator to rebuild from the nodes",
                coord.identity.lost,
                extra={"reason": coord.identity.lost},
            )
            await coord.leadership.release()
        if coord.identity.lost is not None:
            return False
        return await coord.leadership.check()

    async def leader_pass(self) -> None:
        changed = await self.liveness()
        async with self.coord.engine.connect() as conn:
            serial = await catalog.change_serial(conn)
        now = time.monotonic()
        scan = (
            changed
            or serial != self._serial
            or self.repairer.busy
            or now - self._scanned_at >= FULL_SCAN_SECONDS
        )
        # Node rows are read only when a repair scan or a rebalancing round will use them:
        # this pass runs twice a second on the same event loop as placements.
        rebalance = self.rebalancer.enabled and self.rebalancer.ready()
        if scan or rebalance:
            async with self.coord.engine.connect() as conn:
                nodes = await registry.all_nodes(conn, self.coord.now(), self.coord.timeouts)
            if scan:
                self._serial, self._scanned_at = serial, now
                await self.repairer.run_pass(nodes)
            if rebalance and not self.repairer.busy:
                await self.rebalancer.run_pass(nodes)
        await self.retention.run_pass(scan=scan)
        async with self.coord.engine.begin() as conn:
            await catalog.forget_old_placements(conn, self.coord.now())
            tombstone_seconds = self.coord.settings.tombstone_seconds
            if now - self._tombstones_at >= min(TOMBSTONE_SWEEP_SECONDS, tombstone_seconds / 2):
                # A scan of the deleted rows: rare, tombstones are kept for days.
                self._tombstones_at = now
                await catalog.forget_old_tombstones(conn, self.coord.now() - tombstone_seconds)

    async def liveness(self) -> bool:
        """Record state changes (the views derive states themselves); whether any changed."""
        coord = self.coord
        async with coord.engine.begin() as conn:
            changed = await registry.changed_states(conn, coord.now(), coord.timeouts)
            if changed:
                await registry.record_states(conn, changed)
        for node in changed:
            log.warning(
                "node %s is now %s",
                node.node_id,
                node.state,
                extra={"node": node.node_id, "state": node.state.value},
            )
        return bool(changed)

    async def _refresh_gauges(self) -> None:
        now = self.coord.now()
        if now - self._gauges_at < GAUGE_INTERVAL:
            return
        self._gauges_at = now
        async with self.coord.engine.connect() as conn:
            counts = await worklist.counts(conn, now, self.coord.timeouts)
        self.coord.metrics.record_counts(counts)

    async def close(self) -> None:
        await self.repairer.close()
        await self.rebalancer.close()
        await self.retention.close()
        await self.coord.leadership.release()

"""What the coordinator's handlers and loop share, kept at ``app.state.coordinator``."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from slidestore.cluster import LivenessTimeouts, NodeInfo, state_at
from slidestore.cluster.placement import Refusals
from slidestore_server.coordinator import registry
from slidestore_server.coordinator.identity import DatabaseIdentity
from slidestore_server.coordinator.leader import Leadership
from slidestore_server.coordinator.metrics import CoordinatorMetrics
from slidestore_server.coordinator.nodes import NodeClient
from slidestore_server.coordinator.settings import CoordinatorSettings


@dataclass
class Coordinator:
    settings: CoordinatorSettings
    engine: AsyncEngine
    leadership: Leadership
    nodes: NodeClient
    identity: DatabaseIdentity
    metrics: CoordinatorMetrics = field(default_factory=CoordinatorMetrics)
    #: Node rows as last read for placements: (read at, nodes). Placement is the hot
    #: path and the figures move only with heartbeats, so a fraction of a second of
    #: staleness costs nothing; liveness is re-derived from last_heartbeat on every use.
    node_cache: tuple[float, list[NodeInfo]] = (0.0, [])
    node_cache_seconds: float = 1.0  # the heartbeat interval: figures change no faster
    #: Until then (coordinator clock) the leader starts no repair copies: it has only just
    #: taken over and nodes may still be registering (see coordinator/repair.py).
    repair_held_until: float = 0.0
    #: Set when a node reports a quarantined copy: the loop runs its next pass now
    #: instead of at the next tick, so repair of a corrupt copy starts at once.
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: Nodes that just answered 507 to a copy: placement and repair pass them over.
    refusals: Refusals = field(default_factory=Refusals)
    #: Seconds the retention clock is ahead of the wall clock (``SLIDESTORE_CLOCK_FILE``,
    #: tests only), re-read whenever the retention clock is asked.
    clock_offset: float = 0.0

    async def placeable_nodes(self) -> list[NodeInfo]:
        now = self.now()
        read_at, cached = self.node_cache
        timeouts = self.timeouts
        # Serve the cache only while no node's liveness would change by its cached
        # last_heartbeat: that one is stale by up to the cache's age, so re-deriving states
        # from it made live nodes look suspect (no placements: 507) whenever
        # heartbeat_interval + node_cache_seconds exceeded suspect_after.
        if (
            read_at <= now <= read_at + self.node_cache_seconds
            and cached
            and all(state_at(n.last_heartbeat, now, timeouts) is n.state for n in cached)
        ):
            return cached
        async with self.engine.connect() as conn:
            fresh = await registry.all_nodes(conn, now, timeouts)
        self.node_cache = (now, fresh)
        return fresh

    def forget_nodes(self) -> None:
        """A registration or drain here: the next placement must see it."""
        self.node_cache = (0.0, [])

    @property
    def timeouts(self) -> LivenessTimeouts:
        return LivenessTimeouts(
            suspect_after=self.settings.suspect_after, dead_after=self.settings.dead_after
        )

    @staticmethod
    def now() -> float:
        # Wall clock: shared by every coordinator on the database (see schema.py).
        return time.time()

    def lifecycle_now(self) -> float:
        """The retention clock: last accesses are stamped and idle periods measured by it
        (the wall clock, unless a test moved it on with ``SLIDESTORE_CLOCK_FILE``, read
        at every use then: a stamp never lags a move of the clock)."""
        self.read_clock_file()
        return time.time() + self.clock_offset

    def read_clock_file(self) -> None:
        path = self.settings.clock_file
        if path is None:
            return
        try:
            self.clock_offset = float(path.read_text().strip() or 0)
        except (OSError, ValueError):
            self.clock_offset = 0.0

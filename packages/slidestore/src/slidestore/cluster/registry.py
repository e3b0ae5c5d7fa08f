"""The node registry: identity, reported figures, liveness and blob inventories, in memory.

This is the reference semantics for the coordinator's SQL-backed registry (which must
behave the same) and what the cluster tests run against. Times are seconds on the
coordinator's monotonic clock, see ``slidestore.cluster.liveness``.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from slidestore.cluster.errors import InvalidNodeReport, UnknownNode
from slidestore.cluster.liveness import DEFAULT_TIMEOUTS, LivenessTimeouts, state_at
from slidestore.cluster.model import DEFAULT_ZONE, NodeInfo, NodeState, Transition


def _check_figures(node_id: str, capacity: int, free: int, used: int, reserve: int) -> None:
    if min(capacity, free, used, reserve) < 0:
        raise InvalidNodeReport(f"node {node_id}: byte counts must be >= 0")
    if free > capacity:
        raise InvalidNodeReport(f"node {node_id}: free {free} exceeds capacity {capacity}")


class Registry:
    """Nodes, their liveness and their blob inventories, in memory.

    Transitions are collected as they happen (a heartbeat reviving a dead node, a tick
    finding a silent one) and handed out by :meth:`tick`, in order, exactly once: the
    repair loop calls ``tick(now)`` each round and reacts to what changed.

    The registry never forgets a dead node's inventory: when the node returns with its
    blobs intact they count again at once (re-adoption, no re-copy), and whatever repair
    copied meanwhile becomes surplus for the repair planner to trim.
    """

    def __init__(self, timeouts: LivenessTimeouts = DEFAULT_TIMEOUTS) -> None:
        self.timeouts = timeouts
        self._nodes: dict[str, NodeInfo] = {}
        self._inventory: dict[str, set[str]] = {}  # node id -> blob ids it holds
        self._holders: dict[str, set[str]] = {}  # blob id -> node ids holding it
        self._pending: list[Transition] = []
        # Latest time seen: liveness is evaluated against it, so a caller whose clock
        # reading goes backwards cannot revive a dead node without a heartbeat.
        self._now = float("-inf")

    # -- what nodes tell us -------------------------------------------------------------

    def register(
        self,
        node_id: str,
        *,
        now: float,
        capacity_bytes: int,
        free_bytes: int,
        used_bytes: int = 0,
        reserve_bytes: int = 0,
        url: str = "",
        zone: str = DEFAULT_ZONE,
        inventory: Iterable[str] | None = None,
    ) -> NodeInfo:
        """A node (re)starts: record who and where it is, and mark it alive.

        ``node_id`` is the stable id the node keeps in its data directory, so a restart or
        a new URL is the same node. ``inventory`` is the full list of blobs it holds and
        replaces what was known; ``None`` keeps the known inventory (a node that only
        re-announces itself after a coordinator restart). Draining survives re-registration:
        it is an operator decision, not something a node may undo by restarting.
        """
        if not node_id:
            raise InvalidNodeReport("node id must not be empty")
        _check_figures(node_id, capacity_bytes, free_bytes, used_bytes, reserve_bytes)
        now = self._advance(now)
        previous = self._nodes.get(node_id)
        node = NodeInfo(
            node_id=node_id,
            url=url,
            zone=zone or DEFAULT_ZONE,
            capacity_bytes=capacity_bytes,
            free_bytes=free_bytes,
            used_bytes=used_bytes,
            reserve_bytes=reserve_bytes,
            state=NodeState.ALIVE,
            last_heartbeat=now,
            draining=previous.draining if previous is not None else False,
        )
        self._set(node, previous, now)
        self._inventory.setdefault(node_id, set())
        if inventory is not None:
            self._replace_inventory(node_id, set(inventory))
        return node

    def heartbeat(
        self,
        node_id: str,
        *,
        now: float,
        free_bytes: int,
        used_bytes: int,
        load: float = 0.0,
        added: Iterable[str] = (),
        removed: Iterable[str] = (),
    ) -> NodeInfo:
        """A node reports in: new figures, changes to its inventory, and it is alive."""
        previous = self._nodes.get(node_id)
        if previous is None:
            raise UnknownNode(f"node {node_id} is not registered")
        _check_figures(
            node_id, previous.capacity_bytes, free_bytes, used_bytes, previous.reserve_bytes
        )
        now = self._advance(now)
        node = msgspec.structs.replace(
            previous,
            free_bytes=free_bytes,
            used_bytes=used_bytes,
            load=load,
            state=NodeState.ALIVE,
            last_heartbeat=now,
        )
        self._set(node, previous, now)
        for blob_id in removed:
            self._drop(node_id, blob_id)
        for blob_id in added:
            self._add(node_id, blob_id)
        return node

    # -- what the coordinator decides ---------------------------------------------------

    def tick(self, now: float) -> list[Transition]:
        """Re-evaluate liveness at ``now``; return every transition since the last tick."""
        now = self._advance(now)
        for _, node in sorted(self._nodes.items()):
            state = state_at(node.last_heartbeat, now, self.timeouts)
            if state is not node.state:
                self._set(msgspec.structs.replace(node, state=state), node, now)
        transitions, self._pending = self._pending, []
        return transitions

    def set_draining(self, node_id: str, draining: bool = True) -> NodeInfo:
        """Mark a node as leaving (no new replicas; repair moves its copies away) or not."""
        node = msgspec.structs.replace(self.node(node_id), draining=draining)
        self._nodes[node_id] = node
        return node

    def forget(self, node_id: str) -> None:
        """Remove a decommissioned node and its inventory for good."""
        self.node(node_id)
        self._replace_inventory(node_id, set())
        del self._inventory[node_id]
        del self._nodes[node_id]

    # -- queries ------------------------------------------------------------------------

    def node(self, node_id: str) -> NodeInfo:
        try:
            return self._nodes[node_id]
        except KeyError:
            raise UnknownNode(f"node {node_id} is not registered") from None

    def nodes(self) -> list[NodeInfo]:
        """Every known node, in node id order, with its state as of the last tick/heartbeat."""
        return [self._nodes[node_id] for node_id in sorted(self._nodes)]

    def inventory(self, node_id: str) -> frozenset[str]:
        self.node(node_id)
        return frozenset(self._inventory[node_id])

    def holders(self, blob_id: str) -> frozenset[str]:
        """Nodes that reported holding ``blob_id``, whatever their state."""
        return frozenset(self._holders.get(blob_id, ()))

    def replica_map(self) -> dict[str, frozenset[str]]:
        """Blob id -> holders, for every blob some node holds (input to repair planning)."""
        return {blob_id: frozenset(nodes) for blob_id, nodes in self._holders.items()}

    # -- internals ----------------------------------------------------------------------

    def _advance(self, now: float) -> float:
        self._now = max(self._now, now)
        return self._now

    def _set(self, node: NodeInfo, previous: NodeInfo | None, now: float) -> None:
        self._nodes[node.node_id] = node
        if previous is not None and previous.state is not node.state:
            self._pending.append(
                Transition(node_id=node.node_id, before=previous.state, after=node.state, at=now)
            )

    def _replace_inventory(self, node_id: str, blobs: set[str]) -> None:
        for blob_id in self._inventory[node_id] - blobs:
            self._drop(node_id, blob_id)
        for blob_id in blobs:
            self._add(node_id, blob_id)

    def _add(self, node_id: str, blob_id: str) -> None:
        self._inventory[node_id].add(blob_id)
        self._holders.setdefault(blob_id, set()).add(node_id)

    def _drop(self, node_id: str, blob_id: str) -> None:
        self._inventory[node_id].discard(blob_id)
        holders = self._holders.get(blob_id)
        if holders is not None:
            holders.discard(node_id)
            if not holders:
                del self._holders[blob_id]

"""Value objects the cluster logic passes around: nodes, their liveness and replica sets.

They are frozen ``msgspec`` structs so the coordinator can persist them, send them as JSON
and hand the same objects to the pure functions in ``placement`` and ``repair``.
"""

from __future__ import annotations

import enum

import msgspec

from slidestore.errors import InvalidRequest

#: Copies of every blob the cluster keeps unless configured otherwise.
DEFAULT_REPLICAS = 3

#: Zone of a node that did not say which failure domain it is in.
DEFAULT_ZONE = "default"


class NodeState(enum.StrEnum):
    """Liveness of a node as the coordinator sees it (the values are stored in the DB).

    ``suspect`` nodes get no new placements and are not used as copy sources, but their
    replicas still count: a node paused for two seconds must not trigger re-replication.
    Only ``dead`` makes the repair loop re-create what the node held.
    """

    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"


class NodeInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One storage node: identity, where it lives, what it reported last.

    ``reserve_bytes`` is the free space the node keeps for itself (journals, temp files,
    the filesystem's own headroom): a blob is placed only if ``free - reserve`` still holds
    it. ``draining`` is set by an operator, independent of liveness: a draining node keeps
    serving reads and acting as a copy source, but gets nothing new and its replicas stop
    counting towards R, so repair moves them elsewhere.
    """

    node_id: str
    url: str = ""
    zone: str = DEFAULT_ZONE
    capacity_bytes: int
    free_bytes: int
    used_bytes: int = 0
    reserve_bytes: int = 0
    state: NodeState = NodeState.ALIVE
    last_heartbeat: float = 0.0
    load: float = 0.0
    draining: bool = False

    @property
    def available_bytes(self) -> int:
        """Bytes a new blob may take without eating into the reserve."""
        return max(0, self.free_bytes - self.reserve_bytes)

    @property
    def free_fraction(self) -> float:
        """Share of the capacity still free; the quantity placement keeps equal across nodes."""
        if self.capacity_bytes <= 0:
            return 0.0
        return self.free_bytes / self.capacity_bytes

    @property
    def accepts_placements(self) -> bool:
        """Alive, not leaving, with a real capacity: may receive new replicas at all."""
        return self.state is NodeState.ALIVE and not self.draining and self.capacity_bytes > 0

    def fits(self, size: int) -> bool:
        return self.accepts_placements and self.available_bytes >= size


class BlobReplicas(msgspec.Struct, frozen=True, kw_only=True):
    """Where the copies of one blob are, and how many it should have."""

    blob_id: str
    size: int
    replicas: frozenset[str]
    target: int = DEFAULT_REPLICAS

    def __post_init__(self) -> None:
        # A target of 0 would let repair trim every copy: deleting is retention's job.
        if self.target < 1:
            raise InvalidRequest(f"blob {self.blob_id}: target must be >= 1, got {self.target}")
        if self.size < 0:
            raise InvalidRequest(f"blob {self.blob_id}: size must be >= 0, got {self.size}")


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    """A node changed liveness state at ``at`` (coordinator clock)."""

    node_id: str
    before: NodeState
    after: NodeState
    at: float


class CopyTask(msgspec.Struct, frozen=True, kw_only=True):
    """Have ``target`` pull ``blob_id`` from ``source`` (streamed, hash-verified).

    ``live_before`` is how many readable copies the blob had (counting copies planned
    ahead of this one): the priority the task was scheduled with, kept for logs/metrics.
    """

    blob_id: str
    size: int
    source: str
    target: str
    live_before: int


class TrimTask(msgspec.Struct, frozen=True, kw_only=True):
    """Delete the surplus replica of ``blob_id`` held by ``node_id``."""

    blob_id: str
    node_id: str
    size: int


class RepairPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What one pass of the repair loop should start now.

    ``copies`` are in the order they should start (most endangered first). ``unavailable``
    lists blobs that need copies but have no readable replica (every holder is suspect or
    dead: wait, or they are lost); ``unplaceable`` lists blobs that need copies for which no
    eligible target exists (too few live nodes or free space); ``deferred`` counts copies
    that are needed but were left for a later pass by the concurrency limits.
    """

    copies: tuple[CopyTask, ...] = ()
    trims: tuple[TrimTask, ...] = ()
    unavailable: tuple[str, ...] = ()
    unplaceable: tuple[str, ...] = ()
    deferred: int = 0

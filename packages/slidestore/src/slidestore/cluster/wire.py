"""The JSON messages between nodes, the coordinator and clients (see ``docs/cluster.md``).

One module so the node agent, the coordinator and the client SDK cannot drift apart: each
side encodes and decodes exactly these structs with ``msgspec.json``.
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from slidestore.cluster.model import DEFAULT_ZONE, NodeState

API = "/v1"
#: Header on a node-to-node blob pull (``GET /blobs/{id}``): the sender may slow it down
#: while people are using the node, since no person waits for it.
PURPOSE_HEADER = "Slidestore-Purpose"
REPLICA_PURPOSE = "replica"
"""Prefix of the coordinator's cluster API."""


class BlobRef(msgspec.Struct, frozen=True, kw_only=True):
    blob_id: str
    size: int


class BlobPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """What a holder keeps beside a blob so a coordinator that lost its database gets it
    back (``docs/cluster.md``, "Rebuilding the database"): R, retention, owners.

    ``created_at``: when the cluster first stored this content (a tombstone older than
    it belongs to an earlier life of the same sha256); ``changed_at``: when this policy
    was last set (the newest report wins).
    """

    blob_id: str
    target: int
    pinned: bool
    expires_at: float | None = None
    created_at: float = 0.0
    changed_at: float = 0.0
    owners: tuple[str, ...] = ()


class Tombstone(msgspec.Struct, frozen=True, kw_only=True):
    """A blob the cluster deleted (or archived: ``archive_url`` set) at ``deleted_at``.

    Every node keeps the tombstones it is sent, for ``tombstone_seconds``, and reports
    them when it registers: a coordinator rebuilding an empty database must not adopt a
    copy of a deleted blob that a node which was down still holds.
    """

    blob_id: str
    deleted_at: float
    size: int = 0
    archive_url: str | None = None


class LedgerUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """Policies of blobs the node holds and tombstones, changed since the node's cursor.

    The node stores them, then sends ``seq`` back as its cursor (``Heartbeat.ledger_seq``);
    a registration starts over from 0. Tombstones are sent to every node, holder or not.
    """

    seq: int
    policies: tuple[BlobPolicy, ...] = ()
    tombstones: tuple[Tombstone, ...] = ()


# -- node -> coordinator ---------------------------------------------------------------


class NodeReport(msgspec.Struct, frozen=True, kw_only=True):
    """Figures a node sends with every registration and heartbeat."""

    capacity_bytes: int
    free_bytes: int
    used_bytes: int
    reserve_bytes: int = 0
    load: float = 0.0
    """Requests in flight (or any comparable measure of how busy it is)."""


class Register(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /v1/nodes/register``: sent on start and whenever the coordinator forgot us.

    ``inventory`` is the node's complete list of healthy blobs; ``quarantined`` the ids
    whose copy failed a scrub (they do not count as replicas).
    """

    node_id: str
    url: str
    zone: str = DEFAULT_ZONE
    report: NodeReport
    inventory: tuple[BlobRef, ...] = ()
    quarantined: tuple[str, ...] = ()
    policies: tuple[BlobPolicy, ...] = ()
    """The node's stored policy of each blob in ``inventory`` it has one for."""
    tombstones: tuple[Tombstone, ...] = ()
    """Every deletion the node was told about within ``tombstone_seconds``."""


class RegisterAck(msgspec.Struct, frozen=True, kw_only=True):
    heartbeat_interval: float
    suspect_after: float
    dead_after: float
    tombstone_seconds: float = 30 * 86400.0
    """How long nodes keep a tombstone (the coordinator's ``SLIDESTORE_TOMBSTONE_DAYS``)."""
    ledger: LedgerUpdate | None = None


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /v1/nodes/{node_id}/heartbeat``: figures plus inventory changes since the last
    acknowledged heartbeat. A node that gets 404 (``node_unknown``) registers again with its
    full inventory. A node sends one immediately (not waiting for the interval) after an
    upload commits, a replica arrives, a blob is deleted or a scrub quarantines one.
    """

    report: NodeReport
    added: tuple[BlobRef, ...] = ()
    removed: tuple[str, ...] = ()
    quarantined: tuple[str, ...] = ()
    ledger_seq: int = 0
    """The ``LedgerUpdate.seq`` of the last update this node stored."""
    accessed: tuple[str, ...] = ()
    """Blobs people read here (tiles, zarr, info, downloads) since the last acknowledged
    heartbeat: the coordinator stamps their last access with its own clock on receipt
    (a node's clock is never used). Batched here, so reading costs no write."""


class HeartbeatAck(msgspec.Struct, frozen=True, kw_only=True):
    state: NodeState
    ledger: LedgerUpdate | None = None


# -- coordinator -> node -------------------------------------------------------------


class Replicate(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /replicas`` on a node: pull ``blob_id`` and keep it once its sha256 verifies.

    Exactly one source: ``source_url`` is a peer node's base URL (the blob is streamed from
    ``{source_url}/blobs/{blob_id}``), ``archive_url`` an fsspec URL of the blob's archived
    copy. ``bytes_per_second`` caps the copy's bandwidth (None: uncapped).
    """

    blob_id: str
    size: int
    source_url: str | None = None
    archive_url: str | None = None
    bytes_per_second: float | None = None


class Replicated(msgspec.Struct, frozen=True, kw_only=True):
    blob_id: str
    size: int
    copied_bytes: int
    """0 when the node already held a good copy."""
    seconds: float


# -- clients -> coordinator ------------------------------------------------------------


class NodeView(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /v1/nodes`` items."""

    node_id: str
    url: str
    zone: str
    state: NodeState
    capacity_bytes: int
    free_bytes: int
    used_bytes: int
    reserve_bytes: int
    load: float
    last_heartbeat: float
    draining: bool = False
    blobs: int = 0


class PlacementRequest(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /v1/placements``: where should a new blob of ``size`` bytes go?

    With ``sha256`` the coordinator can answer that the cluster already holds it.
    ``exclude`` lists nodes the client failed to reach (a primary killed mid-upload).
    """

    size: int
    sha256: str | None = None
    replicas: int | None = None
    exclude: tuple[str, ...] = ()
    expires_at: float | None = None
    """Retention of the new blob: seconds since the epoch, None to keep it (pinned)."""


class Target(msgspec.Struct, frozen=True, kw_only=True):
    node_id: str
    url: str


class Placement(msgspec.Struct, frozen=True, kw_only=True):
    exists: bool
    """The cluster already has this content (``sha256`` given): nothing to upload."""
    primary: Target | None
    targets: tuple[Target, ...]
    """All R chosen nodes, primary first; the others pull from it after it commits."""
    upload_url: str | None
    """The primary's tus collection URL."""
    token: str | None
    """An ``upload`` grant for this one upload (exactly ``size`` bytes, of content
    ``sha256`` when declared; one tus session); None when the content exists already."""
    replicas: int


class ReplicaView(msgspec.Struct, frozen=True, kw_only=True):
    node_id: str
    url: str
    state: NodeState


class BlobStatus(enum.StrEnum):
    OK = "ok"
    UNDER_REPLICATED = "under_replicated"
    UNAVAILABLE = "unavailable"
    """No replica on a live node right now."""
    LOST = "lost"
    """Every copy failed its checksums and is quarantined: no good bytes are left in the
    cluster (only an archive, if any, can bring the blob back)."""
    ARCHIVED = "archived"
    """In the archive only (retention, or unused for its idle period): restorable."""
    RESTORING = "restoring"
    """Coming back from the archive: fewer copies than R so far (``replicas`` grows)."""
    DELETED = "deleted"


class BlobView(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /v1/blobs/{blob_id}`` (and ``…/wait?replicas=N&timeout=S``, a long poll)."""

    blob_id: str
    size: int
    target: int
    replicas: tuple[ReplicaView, ...]
    """Healthy copies on nodes that are not dead, readable ones (alive) first."""
    status: BlobStatus
    pinned: bool
    expires_at: float | None
    archive_url: str | None = None
    last_access: float | None = None
    """When a node last served it to someone (coordinator clock; None: never read)."""
    archive_after_days: float | None = None
    """Its own idle period before archiving (None: the cluster's default; 0: never)."""
    archive_bytes: int | None = None
    """What its archived object takes (compressed when that was smaller)."""
    archive_encoding: str | None = None
    """``zstd`` or ``raw``: how the archived object is stored."""


class Lifecycle(msgspec.Struct, frozen=True, kw_only=True):
    """``PUT /v1/blobs/{blob_id}/lifecycle`` (``admin``): how long the blob may go unused
    before it is archived. None: the cluster's ``SLIDESTORE_ARCHIVE_IDLE_DAYS``; 0: never."""

    archive_after_days: Annotated[float, msgspec.Meta(ge=0)] | None = None


class Retention(msgspec.Struct, frozen=True, kw_only=True):
    """``PUT /v1/blobs/{blob_id}/retention``."""

    pinned: bool = False
    expires_at: float | None = None


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """Every 4xx/5xx body on the wire."""

    error: str
    detail: str

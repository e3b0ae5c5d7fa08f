"""The coordinator's tables (SQLAlchemy Core: plain rows, no ORM identity map to go stale
when several coordinators write the same database).

Times are wall-clock seconds (``time.time()``) stamped by whichever coordinator received
the message: several coordinators share the rows, so a per-process monotonic clock would
not compare; a node's own clock is never used.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

nodes = Table(
    "nodes",
    metadata,
    Column("node_id", String(64), primary_key=True),
    Column("url", Text, nullable=False),
    Column("zone", String(128), nullable=False),
    # As last recorded by the leader; views recompute it from last_heartbeat.
    Column("state", String(16), nullable=False),
    Column("capacity_bytes", BigInteger, nullable=False),
    Column("free_bytes", BigInteger, nullable=False),
    Column("used_bytes", BigInteger, nullable=False),
    Column("reserve_bytes", BigInteger, nullable=False),
    Column("load", Double, nullable=False, default=0.0),
    Column("last_heartbeat", Double, nullable=False),
    Column("draining", Boolean, nullable=False, default=False),
)

blobs = Table(
    "blobs",
    metadata,
    Column("blob_id", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("target", Integer, nullable=False),
    Column("pinned", Boolean, nullable=False),
    Column("expires_at", Double, nullable=True),
    Column("archive_url", Text, nullable=True),
    # Archived: the live copies were dropped on purpose (expired, safe in the archive).
    Column("archived", Boolean, nullable=False, default=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("created_at", Double, nullable=False),
    # The nodes' copy of this row (docs/cluster.md, "Rebuilding the database"): when it
    # was deleted or archived, when its policy (R, retention, owners) was last set, and
    # the change serial of the last of those, which nodes follow as their ledger cursor.
    Column("deleted_at", Double, nullable=True),
    Column("policy_at", Double, nullable=True),
    Column("ledger_seq", BigInteger, nullable=True),
    # Lifecycle (coordinator/lifecycle.py): when a node last served it to someone (the
    # retention clock), its own idle period before archiving (NULL: the cluster's), an
    # archive asked for by an operator, the archived object's size and encoding, and
    # whether a restore is bringing its copies back.
    Column("last_access", Double, nullable=True),
    Column("archive_after_days", Double, nullable=True),
    Column("archive_now", Boolean, nullable=True),
    Column("archive_bytes", BigInteger, nullable=True),
    Column("archive_encoding", String(8), nullable=True),
    Column("restoring", Boolean, nullable=True),
    Index("ix_blobs_expires_at", "expires_at"),
    Index("ix_blobs_ledger_seq", "ledger_seq"),
)

replicas = Table(
    "replicas",
    metadata,
    Column("blob_id", String(64), primary_key=True),
    Column("node_id", String(64), primary_key=True),
    # A copy that failed a scrub: kept so the node is asked to drop it, never counted.
    Column("quarantined", Boolean, nullable=False, default=False),
    Index("ix_replicas_node", "node_id"),
)

# Placements not yet committed: the blob row is created by the heartbeat that reports
# the upload, so abandoned uploads leave no blob behind. Without a sha256 the blob id is
# unknown until then; the commit is matched by (primary node, size).
placements = Table(
    "placements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("blob_id", String(64), nullable=True),
    Column("primary_node", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("target", Integer, nullable=False),
    Column("pinned", Boolean, nullable=False),
    Column("expires_at", Double, nullable=True),
    Column("created_at", Double, nullable=False),
    # Who asked (the token's subject): becomes an owner of the blob when it commits.
    Column("owner", String(128), nullable=True),
    Index("ix_placements_blob", "blob_id"),
    Index("ix_placements_primary", "primary_node", "size"),
)

# The clients whose upload made a blob (their placement's owner). A client's ``delete``
# drops its own claim; the blob goes when the last claim does. Blobs nobody placed
# (adopted) have no row: only an operator's ``admin`` token deletes them.
owners = Table(
    "owners",
    metadata,
    Column("blob_id", String(64), primary_key=True),
    Column("owner", String(128), primary_key=True),
)

# The SQLite leader lease (PostgreSQL uses an advisory lock instead).
leader = Table(
    "leader",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("holder", String(64), nullable=False),
    Column("expires_at", Double, nullable=False),
    # The leader's term: kept while the same coordinator re-takes the lead with nobody
    # in between (a reconnect), new whenever another coordinator took it (leader.py).
    Column("term", String(64), nullable=True),
)

# One row per database, written when its schema is created: a coordinator remembers the
# value it started with and stops leading when it reads another (or none) — its database
# was replaced or emptied under it (coordinator/identity.py).
identity = Table(
    "identity",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", String(64), nullable=False),
)

# One row (id 1) whose serial every write that may give the repair loop work bumps
# (inventory changes, registrations, deletes, retention, drains). The leader scans all
# blobs only when it moved, when a node changed state, while repair is under way, or
# every FULL_SCAN_SECONDS: an idle cluster of 20k blobs costs no aggregate query per pass.
changes = Table(
    "changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("serial", BigInteger, nullable=False),
)

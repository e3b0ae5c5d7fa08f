"""Errors of the cluster logic and of the coordinator's API, part of the
``slidestore.errors`` hierarchy.

They live here rather than in ``slidestore.errors`` so the cluster package stays
self-contained; each still inherits ``SlidestoreError`` and the builtin a caller would
catch, and declares its wire ``code`` and HTTP ``status`` like every other error. The
coordinator raises the ones of its API from here, so a client knows every code it can see.
"""

from __future__ import annotations

from slidestore.errors import (
    Busy,
    ClusterUnavailable,
    InsufficientStorage,
    InvalidRequest,
    ReplicationTimeout,
    SlidestoreError,
)


class NoPlacement(InsufficientStorage, RuntimeError):
    """Fewer eligible nodes (alive, not draining, with room above their reserve) than needed.

    A condition of the cluster, not of the request: retrying after nodes return or space
    is freed may succeed. Servers answer 507 Insufficient Storage, like a node short of
    room, so a client that catches :class:`~slidestore.errors.InsufficientStorage` sees
    both.
    """

    code = "no_placement"
    status = 507

    def __init__(self, message: str, *, needed: int = 0, found: int = 0) -> None:
        super().__init__(message)
        self.needed = needed
        self.found = found


class UnknownNode(SlidestoreError, KeyError):
    """A heartbeat or query for a node id the registry has never seen (it must register)."""

    code = "unknown_node"
    status = 404

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else self.code


class NodeUnknown(UnknownNode):
    """A heartbeat from a node this cluster does not know: the node must register again.

    ``docs/cluster.md`` names the code ``node_unknown``; nodes react to it by registering.
    """

    code = "node_unknown"


class InvalidNodeReport(InvalidRequest):
    """A registration or heartbeat with impossible figures (negative bytes, free > capacity)."""

    code = "invalid_node_report"


class WaitTimeout(ReplicationTimeout):
    """``GET /v1/blobs/{id}/wait`` gave up before the blob had the copies asked for."""

    code = "wait_timeout"
    status = 408


class TooManyWaits(Busy):
    """One token holds as many ``…/wait`` long polls as it may; ``retry_after`` seconds is
    a fair time to wait before asking again (the ``Retry-After`` header)."""

    code = "too_many_waits"
    status = 429


class NotArchived(SlidestoreError, RuntimeError):
    """``restore`` of a blob that has no archived copy."""

    code = "not_archived"
    status = 409


class NoArchive(SlidestoreError, RuntimeError):
    """``archive`` of a blob on a cluster without an archive (``SLIDESTORE_ARCHIVE_URL``)."""

    code = "no_archive"
    status = 409


class DatabaseUnavailable(ClusterUnavailable):
    """The coordinator's database is away (a restart, a lost connection); the coordinator
    answers 503 with ``Retry-After`` and clients try again or another coordinator."""

    code = "database_unavailable"
    status = 503

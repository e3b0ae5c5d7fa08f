"""Errors only the coordinator raises; their statuses are in ``slidestore_server.errors``."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from slidestore.cluster.errors import UnknownNode
from slidestore.errors import SlidestoreError


class NodeUnknown(UnknownNode):
    """A heartbeat from a node this cluster does not know: the node must register again.

    ``docs/cluster.md`` names the code ``node_unknown``; nodes react to it by registering.
    """

    code = "node_unknown"


class WaitTimeout(SlidestoreError, TimeoutError):
    """``GET /v1/blobs/{id}/wait`` gave up before the blob had the copies asked for."""

    code = "wait_timeout"


class NotArchived(SlidestoreError, RuntimeError):
    """``restore`` of a blob that has no archived copy."""

    code = "not_archived"


def database_unavailable(exc: BaseException) -> bool:
    """Whether a database error means "not now" rather than a fault in the request.

    Lost connections (PostgreSQL restarted or unreachable) and SQLite's "database is
    locked" are operational: the caller should retry, and the engine has already thrown
    away the broken connections. Anything else (a constraint, bad SQL) is a bug.
    """
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    )

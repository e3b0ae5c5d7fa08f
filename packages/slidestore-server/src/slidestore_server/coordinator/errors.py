"""Errors only the coordinator raises; their statuses are in ``slidestore_server.errors``."""

from __future__ import annotations

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


class TooManyWaits(SlidestoreError):
    """One token holds as many ``…/wait`` long polls as it may (see ``coordinator.waits``)."""

    code = "too_many_waits"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotArchived(SlidestoreError, RuntimeError):
    """``restore`` of a blob that has no archived copy."""

    code = "not_archived"

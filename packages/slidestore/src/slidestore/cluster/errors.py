"""Errors of the cluster logic, part of the ``slidestore.errors`` hierarchy.

They live here rather than in ``slidestore.errors`` so the cluster package stays
self-contained; each still inherits ``SlidestoreError`` and the builtin a caller would catch.
"""

from __future__ import annotations

from slidestore.errors import InvalidRequest, SlidestoreError


class NoPlacement(SlidestoreError, RuntimeError):
    """Fewer eligible nodes (alive, not draining, with room above their reserve) than needed.

    A condition of the cluster, not of the request: retrying after nodes return or space
    is freed may succeed (servers answer 503).
    """

    code = "no_placement"

    def __init__(self, message: str, *, needed: int, found: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.found = found


class UnknownNode(SlidestoreError, KeyError):
    """A heartbeat or query for a node id the registry has never seen (it must register)."""

    code = "unknown_node"

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else self.code


class InvalidNodeReport(InvalidRequest):
    """A registration or heartbeat with impossible figures (negative bytes, free > capacity)."""

    code = "invalid_node_report"

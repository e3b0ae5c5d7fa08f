"""Node liveness from heartbeats.

A node is ``alive`` while its last heartbeat is younger than ``suspect_after``, ``suspect``
until ``dead_after``, then ``dead``; any heartbeat (or re-registration) makes it alive
again. The state is a pure function of (last heartbeat, now, timeouts): :func:`state_at`;
the coordinator's registry (``slidestore_server.coordinator.registry``) keeps the
heartbeats and applies it.

Times are seconds on the coordinator's *monotonic* clock: heartbeats are stamped when
they arrive, never with the node's own clock, so skew between machines cannot kill a node.
"""

from __future__ import annotations

import msgspec

from slidestore.cluster.model import NodeState
from slidestore.errors import InvalidRequest


class LivenessTimeouts(msgspec.Struct, frozen=True, kw_only=True):
    """Silence after which a node is suspect / dead.

    The defaults (3 s and 10 s with 1 s heartbeats) survive two lost heartbeats without
    even a suspicion, and a pause (GC, SIGSTOP, a saturated link) of up to ten seconds
    without data being moved, while still reacting in seconds, not HDFS's ten minutes.
    """

    suspect_after: float = 3.0
    dead_after: float = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.suspect_after <= self.dead_after:
            raise InvalidRequest(
                "liveness timeouts need 0 < suspect_after <= dead_after, got "
                f"{self.suspect_after} and {self.dead_after}"
            )


DEFAULT_TIMEOUTS = LivenessTimeouts()


def state_at(
    last_heartbeat: float, now: float, timeouts: LivenessTimeouts = DEFAULT_TIMEOUTS
) -> NodeState:
    """Liveness of a node last heard from at ``last_heartbeat``, seen at ``now``.

    Boundaries: silent for less than ``suspect_after`` is alive, for at least ``dead_after``
    is dead, so a node is never declared dead before the full dead timeout has passed. A
    heartbeat stamped after ``now`` (clock read in another order) counts as silence 0.
    """
    silence = now - last_heartbeat
    if silence < timeouts.suspect_after:
        return NodeState.ALIVE
    if silence < timeouts.dead_after:
        return NodeState.SUSPECT
    return NodeState.DEAD

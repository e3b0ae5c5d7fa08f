"""Liveness thresholds (the SQL registry that applies them is tested in
``slidestore-server``'s ``test_registry.py``)."""

from __future__ import annotations

import pytest

from slidestore.cluster import LivenessTimeouts, NodeState, state_at
from slidestore.errors import InvalidRequest


def test_state_at_boundaries() -> None:
    t = LivenessTimeouts()
    assert (t.suspect_after, t.dead_after) == (3.0, 10.0)
    assert state_at(100.0, 102.999, t) is NodeState.ALIVE
    assert state_at(100.0, 103.0, t) is NodeState.SUSPECT
    assert state_at(100.0, 109.999, t) is NodeState.SUSPECT
    assert state_at(100.0, 110.0, t) is NodeState.DEAD
    assert state_at(100.0, 99.0, t) is NodeState.ALIVE  # heartbeat stamped "after" now
    custom = LivenessTimeouts(suspect_after=0.5, dead_after=2.0)
    assert state_at(0.0, 1.0, custom) is NodeState.SUSPECT


@pytest.mark.parametrize(("suspect", "dead"), [(0.0, 1.0), (5.0, 4.0), (-1.0, 3.0)])
def test_timeouts_must_be_ordered_and_positive(suspect: float, dead: float) -> None:
    with pytest.raises(InvalidRequest):
        LivenessTimeouts(suspect_after=suspect, dead_after=dead)

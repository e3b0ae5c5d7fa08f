"""Liveness thresholds and the in-memory node registry."""

from __future__ import annotations

import pytest

from slidestore.cluster import (
    InvalidNodeReport,
    LivenessTimeouts,
    NodeState,
    Registry,
    Transition,
    UnknownNode,
    state_at,
)
from slidestore.errors import InvalidRequest, SlidestoreError

TB = 10**12


def register(reg: Registry, node_id: str, now: float, **kwargs: object) -> None:
    reg.register(node_id, now=now, capacity_bytes=TB, free_bytes=TB, **kwargs)  # type: ignore[arg-type]


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


def test_lifecycle_alive_suspect_dead_alive() -> None:
    reg = Registry()
    register(reg, "a", 0.0, url="http://a", zone="rack-1")
    assert reg.node("a").state is NodeState.ALIVE
    assert reg.node("a").zone == "rack-1"
    assert reg.tick(2.9) == []
    assert reg.tick(3.0) == [
        Transition(node_id="a", before=NodeState.ALIVE, after=NodeState.SUSPECT, at=3.0)
    ]
    assert reg.tick(9.0) == []
    assert [t.after for t in reg.tick(10.0)] == [NodeState.DEAD]
    reg.heartbeat("a", now=15.0, free_bytes=TB // 2, used_bytes=TB // 2, load=0.5)
    node = reg.node("a")
    assert (node.state, node.free_bytes, node.load, node.last_heartbeat) == (
        NodeState.ALIVE,
        TB // 2,
        0.5,
        15.0,
    )
    # The revival is reported by the next tick, once.
    assert reg.tick(15.5) == [
        Transition(node_id="a", before=NodeState.DEAD, after=NodeState.ALIVE, at=15.0)
    ]
    assert reg.tick(15.6) == []


def test_a_long_jump_goes_straight_to_dead() -> None:
    reg = Registry()
    register(reg, "a", 0.0)
    assert [(t.before, t.after) for t in reg.tick(60.0)] == [(NodeState.ALIVE, NodeState.DEAD)]


def test_clock_going_backwards_does_not_revive_a_dead_node() -> None:
    reg = Registry()
    register(reg, "a", 0.0)
    reg.tick(20.0)
    assert reg.tick(1.0) == []
    assert reg.node("a").state is NodeState.DEAD


def test_reregistration_keeps_identity_and_draining_and_replaces_inventory() -> None:
    reg = Registry()
    register(reg, "a", 0.0, url="http://old", inventory=["b1", "b2"])
    reg.set_draining("a")
    register(reg, "a", 1.0, url="http://new")  # inventory=None keeps what is known
    assert reg.node("a").url == "http://new"
    assert reg.node("a").draining
    assert reg.inventory("a") == {"b1", "b2"}
    register(reg, "a", 2.0, inventory=["b2", "b3"])  # full report replaces
    assert reg.inventory("a") == {"b2", "b3"}
    assert reg.holders("b1") == frozenset()
    assert reg.replica_map() == {"b2": {"a"}, "b3": {"a"}}
    assert not reg.set_draining("a", False).draining


def test_inventory_deltas_and_holders() -> None:
    reg = Registry()
    register(reg, "a", 0.0)
    register(reg, "b", 0.0)
    reg.heartbeat("a", now=1.0, free_bytes=TB, used_bytes=0, added=["x", "y"])
    reg.heartbeat("b", now=1.0, free_bytes=TB, used_bytes=0, added=["x"])
    reg.heartbeat("a", now=2.0, free_bytes=TB, used_bytes=0, removed=["x"])
    assert reg.holders("x") == {"b"}
    assert reg.holders("y") == {"a"}
    assert reg.replica_map() == {"x": {"b"}, "y": {"a"}}


def test_dead_nodes_keep_their_inventory_for_readoption() -> None:
    reg = Registry()
    register(reg, "a", 0.0, inventory=["x"])
    reg.tick(30.0)
    assert reg.node("a").state is NodeState.DEAD
    assert reg.holders("x") == {"a"}  # still known: counts again the moment it returns
    reg.heartbeat("a", now=31.0, free_bytes=TB, used_bytes=0)
    assert reg.node("a").state is NodeState.ALIVE


def test_forget_removes_node_and_inventory() -> None:
    reg = Registry()
    register(reg, "a", 0.0, inventory=["x"])
    reg.forget("a")
    assert reg.nodes() == []
    assert reg.replica_map() == {}
    with pytest.raises(UnknownNode):
        reg.forget("a")


def test_unknown_node_and_bad_reports() -> None:
    reg = Registry()
    with pytest.raises(UnknownNode) as info:
        reg.heartbeat("ghost", now=0.0, free_bytes=0, used_bytes=0)
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value, SlidestoreError)
    assert str(info.value) == "node ghost is not registered"
    with pytest.raises(InvalidNodeReport):
        reg.register("a", now=0.0, capacity_bytes=TB, free_bytes=2 * TB)
    with pytest.raises(InvalidNodeReport):
        reg.register("a", now=0.0, capacity_bytes=TB, free_bytes=-1)
    with pytest.raises(InvalidNodeReport):
        reg.register("", now=0.0, capacity_bytes=TB, free_bytes=TB)
    register(reg, "a", 0.0)
    with pytest.raises(InvalidNodeReport):
        reg.heartbeat("a", now=1.0, free_bytes=TB + 1, used_bytes=0)


def test_nodes_are_listed_in_id_order() -> None:
    reg = Registry()
    for node_id in ["c", "a", "b"]:
        register(reg, node_id, 0.0)
    assert [n.node_id for n in reg.nodes()] == ["a", "b", "c"]

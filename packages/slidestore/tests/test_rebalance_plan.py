"""Rebalancing after a node joins: few bytes moved, nodes level again, replicas never at risk.

The cluster is filled to 70% with slide-like blobs (lognormal, median 4 GB, 1-25 GB) by
``place``, then an empty node joins (equal capacity, or anywhere in a 1:5 to 5:1 spread)
and ``plan_rebalance`` is applied round after round, as the coordinator would, until it
proposes nothing.

The least that must move for the newcomer to be as full as the rest is its share of the
used bytes, ``mean fill x its capacity``. Discrete blobs make exact balance impossible, so
the bounds allow one largest blob on top (and the half-tolerance a receiver may end above
the mean): moved <= 1.05 x minimum + max blob, and the final spread of fills <= tolerance
+ max blob / smallest capacity. Where a node holds more
than 1/R of the capacity, or a zone more than 1/min(R, zones), one copy per node and per
zone make that level unreachable; there the run must only end, every move safe.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slidestore.cluster import (
    BlobReplicas,
    NodeInfo,
    NodeState,
    fill,
    fill_spread,
    place,
    plan_rebalance,
)
from slidestore.errors import InvalidRequest

GB = 10**9
TB = 10**12


def filled_cluster(
    capacities: list[int], zones: list[str], replicas: int, seed: int, level: float = 0.7
) -> tuple[dict[str, NodeInfo], dict[str, BlobReplicas]]:
    rng = np.random.default_rng(seed)
    nodes = {
        f"node-{i:02d}": NodeInfo(
            node_id=f"node-{i:02d}", zone=zones[i], capacity_bytes=c, free_bytes=c
        )
        for i, c in enumerate(capacities)
    }
    blobs: dict[str, BlobReplicas] = {}
    used, total = 0, sum(capacities)
    while used < level * total:
        size = int(np.clip(rng.lognormal(math.log(4 * GB), 0.75), GB, 25 * GB))
        blob_id = f"{seed:08x}{len(blobs):056x}"
        chosen = place(blob_id, size, list(nodes.values()), replicas=replicas)
        for node_id in chosen:
            node = nodes[node_id]
            nodes[node_id] = msgspec.structs.replace(node, free_bytes=node.free_bytes - size)
        blobs[blob_id] = BlobReplicas(
            blob_id=blob_id, size=size, replicas=frozenset(chosen), target=replicas
        )
        used += size * replicas
    return nodes, blobs


def apply(
    nodes: dict[str, NodeInfo], blobs: dict[str, BlobReplicas], max_moves: int
) -> tuple[int, int]:
    """Rebalance to the end; returns (bytes moved, rounds). Checks every move's safety."""
    moved = rounds = 0
    while True:
        plan = plan_rebalance(blobs.values(), nodes.values(), max_moves=max_moves)
        if not plan:
            return moved, rounds
        rounds += 1
        assert len(plan) <= max_moves
        assert len({m.blob_id for m in plan}) == len(plan), "a blob moved twice in one round"
        for move in plan:
            blob = blobs[move.blob_id]
            assert move.source in blob.replicas
            assert move.target not in blob.replicas, "two replicas on one node"
            after = (blob.replicas - {move.source}) | {move.target}
            zones_before = {nodes[n].zone for n in blob.replicas}
            assert len({nodes[n].zone for n in after}) >= len(zones_before)
            assert len(after) == blob.target
            blobs[move.blob_id] = msgspec.structs.replace(blob, replicas=frozenset(after))
            for node_id, delta in ((move.source, move.size), (move.target, -move.size)):
                node = nodes[node_id]
                nodes[node_id] = msgspec.structs.replace(node, free_bytes=node.free_bytes + delta)
            assert nodes[move.target].free_bytes >= 0
            moved += move.size
        assert rounds < 10_000


@settings(max_examples=25, deadline=None)
@given(
    old=st.integers(3, 8),
    zones=st.integers(1, 4),
    replicas=st.integers(1, 3),
    newcomer=st.sampled_from([1.0, 0.2, 0.5, 2.0, 5.0]),
    seed=st.integers(0, 2**31),
)
def test_a_joining_node_gets_its_share_and_little_else_moves(
    old: int, zones: int, replicas: int, newcomer: float, seed: int
) -> None:
    replicas = min(replicas, old)
    capacity = 2 * TB
    capacities = [capacity] * old
    zone_names = [f"z{i % zones}" for i in range(old)]
    nodes, blobs = filled_cluster(capacities, zone_names, replicas, seed)
    new = NodeInfo(
        node_id="node-new",
        zone=f"z{seed % (zones + 1)}",  # an existing zone or a new one
        capacity_bytes=int(capacity * newcomer),
        free_bytes=int(capacity * newcomer),
    )
    nodes[new.node_id] = new
    everything = list(nodes.values())
    mean = 1 - sum(n.free_bytes for n in everything) / sum(n.capacity_bytes for n in everything)
    minimum = sum(
        max(0.0, (fill(n) - mean) * n.capacity_bytes) for n in everything
    )  # what over-full nodes hold beyond the mean; here about the newcomer's share
    largest = max(b.size for b in blobs.values())

    moved, _ = apply(nodes, blobs, max_moves=8)

    assert fill(nodes["node-new"]) > 0
    # A receiver may end up to half the tolerance above the mean, so that nodes at the mean
    # can still take what a donor cannot hand the newcomer directly.
    allowance = minimum + 0.025 * new.capacity_bytes
    # The newcomer can take a copy from any node if it is in a zone of its own (or there
    # is one zone, or one copy): then nothing moves but towards it. Otherwise some copies
    # reach it through a node in between (the zone rule forbids the direct move), which
    # costs more: up to 1.10x measured over 150 random clusters.
    direct = new.zone not in zone_names or zones == 1 or replicas == 1
    bound = 1.05 if direct else 1.25
    assert moved <= bound * allowance + largest, (moved / GB, allowance / GB, direct)

    smallest = min(n.capacity_bytes for n in nodes.values())
    slack = 0.05 + largest / smallest
    by_zone: dict[str, float] = {}
    for n in everything:
        by_zone[n.zone] = by_zone.get(n.zone, 0) + n.capacity_bytes
    total = sum(by_zone.values())
    node_share = max(n.capacity_bytes for n in everything) / total
    zone_share = max(by_zone.values()) / total
    if node_share <= 1 / replicas and zone_share <= 1 / min(replicas, len(by_zone)):
        # Every node and zone can hold its share (one copy per node, one per zone while
        # zones last): the cluster ends level.
        assert fill_spread(nodes.values()) <= slack
        assert fill(nodes["node-new"]) >= mean - slack
    # Otherwise a node or zone is too large to fill to the mean (a 10 TB newcomer among
    # 2 TB nodes at R=3 can hold one copy of everything and still be emptier than the
    # rest): ``apply`` ran until no move was allowed, every move checked safe.


def test_a_filled_cluster_with_a_new_node_ends_level() -> None:
    """6 x 4 TB at 70%, R=3 over 3 zones; a 4 TB node joins in a zone of its own (in z0,
    z0 would hold 12 of 28 TB, more than the third one copy per zone can fill)."""
    zones = [f"z{i % 3}" for i in range(6)]
    nodes, blobs = filled_cluster([4 * TB] * 6, zones, 3, seed=7)
    total = sum(b.size * b.target for b in blobs.values())
    nodes["node-new"] = NodeInfo(
        node_id="node-new", zone="z3", capacity_bytes=4 * TB, free_bytes=4 * TB
    )
    share = total * 4 / 28  # its capacity share of everything stored
    moved, rounds = apply(nodes, blobs, max_moves=4)
    assert share * 0.9 <= moved <= share * 1.05
    assert fill_spread(nodes.values()) <= 0.05
    assert sum(b.size * len(b.replicas) for b in blobs.values()) == total
    assert rounds >= moved / (4 * 25 * GB)  # never more than max_moves per round


def node(node_id: str, *, free: int, zone: str = "z", **fields: object) -> NodeInfo:
    return NodeInfo(
        node_id=node_id,
        zone=zone,
        capacity_bytes=100 * GB,
        free_bytes=free,
        **fields,  # type: ignore[arg-type]
    )


def blob(name: str, size: int, *holders: str, target: int = 2) -> BlobReplicas:
    return BlobReplicas(blob_id=name * 64, size=size, replicas=frozenset(holders), target=target)


def test_only_whole_blobs_on_healthy_nodes_move() -> None:
    nodes = [
        node("a", free=10 * GB),
        node("b", free=12 * GB),
        node("c", free=100 * GB),
        node("s", free=10 * GB, state=NodeState.SUSPECT),
    ]
    candidates = [
        blob("1", 5 * GB, "a", "b", target=3),  # under-replicated: repair's business
        blob("2", 5 * GB, "a", "s"),  # a holder is suspect
        blob("3", 5 * GB, "a", "b"),  # in flight already
        blob("4", 5 * GB, "a", "b"),
    ]
    plan = plan_rebalance(candidates, nodes, max_moves=5, busy={"3" * 64})
    assert {m.blob_id for m in plan} == {"4" * 64}
    assert plan[0].target == "c"


def test_level_nodes_and_lone_nodes_move_nothing() -> None:
    level = [node("a", free=50 * GB), node("b", free=53 * GB)]
    assert plan_rebalance([blob("1", GB, "a")], level, max_moves=4) == ()
    assert plan_rebalance([blob("1", GB, "a")], [node("a", free=0)], max_moves=4) == ()
    draining = [node("a", free=0), node("b", free=100 * GB, draining=True)]
    assert plan_rebalance([blob("1", GB, "a", target=1)], draining, max_moves=4) == ()


def test_no_move_overshoots() -> None:
    """A 40 GB blob would take the receiver past the donor: it stays; a 10 GB one moves."""
    nodes = [node("a", free=20 * GB), node("b", free=60 * GB)]
    big = blob("1", 40 * GB, "a", target=1)
    assert plan_rebalance([big], nodes, max_moves=4) == ()
    small = blob("2", 10 * GB, "a", target=1)
    plan = plan_rebalance([big, small], nodes, max_moves=4)
    assert [(m.blob_id[0], m.source, m.target) for m in plan] == [("2", "a", "b")]


def test_a_move_keeps_the_blob_in_as_many_zones() -> None:
    nodes = [
        node("a", free=10 * GB, zone="z1"),
        node("b", free=50 * GB, zone="z2"),
        node("c", free=100 * GB, zone="z2"),
        node("d", free=90 * GB, zone="z3"),
    ]
    plan = plan_rebalance([blob("1", 5 * GB, "a", "b")], nodes, max_moves=1)
    # c is emptier, but z2 already holds b's copy: the move goes to d in z3.
    assert [(m.source, m.target) for m in plan] == [("a", "d")]


@pytest.mark.parametrize(
    ("options", "message"),
    [({"max_moves": -1}, "max_moves"), ({"max_moves": 1, "tolerance": 0}, "tolerance")],
)
def test_bad_arguments_are_named(options: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        plan_rebalance([], [], **options)  # type: ignore[arg-type]

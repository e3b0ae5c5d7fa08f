"""Repair planning: what to copy first, from where to where, and what to trim."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slidestore.cluster import (
    BlobReplicas,
    CopyTask,
    NodeInfo,
    NodeState,
    RepairPlan,
    plan_repair,
)
from slidestore.errors import InvalidRequest

GB = 10**9
TB = 10**12
ALIVE, SUSPECT, DEAD = NodeState.ALIVE, NodeState.SUSPECT, NodeState.DEAD


def node(
    node_id: str,
    state: NodeState = ALIVE,
    *,
    zone: str | None = None,
    free: int = 8 * TB,
    draining: bool = False,
) -> NodeInfo:
    return NodeInfo(
        node_id=node_id,
        zone=zone or f"zone-{node_id}",
        capacity_bytes=10 * TB,
        free_bytes=free,
        state=state,
        draining=draining,
    )


def blob(blob_id: str, *holders: str, size: int = GB, target: int = 3) -> BlobReplicas:
    return BlobReplicas(blob_id=blob_id, size=size, replicas=frozenset(holders), target=target)


def nodes_of(*specs: NodeInfo) -> list[NodeInfo]:
    return list(specs)


def test_healthy_cluster_needs_nothing() -> None:
    nodes = [node(n) for n in "abcd"]
    assert plan_repair([blob("x", "a", "b", "c"), blob("y", "b", "c", "d")], nodes) == RepairPlan()


def test_dead_node_blobs_get_one_copy_each_from_a_live_replica() -> None:
    nodes = [node("a", DEAD), node("b"), node("c"), node("d"), node("e")]
    blobs = [blob("x", "a", "b", "c"), blob("y", "a", "c", "d"), blob("z", "b", "c", "d")]
    plan = plan_repair(blobs, nodes)
    assert sorted(t.blob_id for t in plan.copies) == ["x", "y"]
    for task in plan.copies:
        holders = next(b.replicas for b in blobs if b.blob_id == task.blob_id)
        assert task.source in holders
        assert task.source != "a"
        assert task.target not in holders
        assert task.target != "a"
    assert plan.trims == ()


def test_most_endangered_first_and_limited() -> None:
    nodes = [node(n) for n in "bcdefgh"] + [node("a", DEAD), node("z", DEAD)]
    blobs = [
        blob("two-live", "a", "b", "c"),
        blob("one-live", "a", "z", "d"),
        blob("one-live-big", "a", "z", "e", size=20 * GB),
        blob("two-live-b", "z", "f", "g"),
    ]
    plan = plan_repair(blobs, nodes, max_copies=3)
    # Both one-live blobs get a copy before any two-live blob, the smaller first; then
    # a second copy for a blob that still has one readable replica (one copy pending)
    # goes before a blob that already has two.
    assert [t.blob_id for t in plan.copies] == ["one-live", "one-live-big", "one-live"]
    assert [t.live_before for t in plan.copies] == [1, 1, 2]
    assert plan.deferred == 3  # one-live-big's second copy, two-live, two-live-b
    full = plan_repair(blobs, nodes, max_copies=100)
    assert [t.live_before for t in full.copies] == sorted(t.live_before for t in full.copies)
    assert len(full.copies) == 6
    assert full.deferred == 0


def test_suspect_replicas_count_but_are_not_sources() -> None:
    nodes = [node("a", SUSPECT), node("b", SUSPECT), node("c"), node("d")]
    # A pause is not a reason to move data: nothing to copy while holders are only suspect.
    assert plan_repair([blob("x", "a", "b", "c")], nodes).copies == ()
    # When a copy is needed, the source is never a suspect (nor dead) node.
    plan = plan_repair([blob("y", "a", "c", target=3), blob("w", "a", "b", target=4)], nodes)
    assert {t.source for t in plan.copies} <= {"c"}
    assert plan.unavailable == ("w",)  # needs a copy, but no readable replica


def test_all_holders_dead_is_reported_unavailable() -> None:
    nodes = [node("a", DEAD), node("b"), node("c"), node("d")]
    plan = plan_repair([blob("lost", "a"), blob("unknown-holder", "ghost")], nodes)
    assert plan.copies == ()
    assert plan.unavailable == ("lost", "unknown-holder")


def test_not_enough_nodes_is_reported_unplaceable() -> None:
    nodes = [node("a"), node("b", DEAD)]
    plan = plan_repair([blob("x", "a", "b")], nodes)
    assert plan.copies == ()
    assert plan.unplaceable == ("x",)


def test_returning_node_is_readopted_without_copies() -> None:
    nodes = [node(n) for n in "abcd"]
    blobs = [blob("x", "a", "b", "c")]
    dead = [msgspec.structs.replace(n, state=DEAD) if n.node_id == "a" else n for n in nodes]
    assert len(plan_repair(blobs, dead).copies) == 1
    # It came back before the copy ran: its replica counts again, nothing to do.
    assert plan_repair(blobs, nodes) == RepairPlan()


def test_surplus_after_return_is_trimmed_from_the_fullest_never_below_r() -> None:
    nodes = [
        node("a", free=1 * TB),  # fullest
        node("b", free=7 * TB),
        node("c", free=8 * TB),
        node("d", free=9 * TB),
        node("e", free=9 * TB),
    ]
    plan = plan_repair([blob("x", "a", "b", "c", "d", "e")], nodes)
    assert plan.copies == ()
    assert [t.node_id for t in plan.trims] == ["a", "b"]  # down to exactly R = 3


def test_trim_keeps_zones_distinct() -> None:
    nodes = [
        node("a1", zone="a", free=5 * TB),
        node("a2", zone="a", free=6 * TB),
        node("b1", zone="b", free=1 * TB),  # fullest, but the only replica in zone b
        node("c1", zone="c", free=6 * TB),
    ]
    plan = plan_repair([blob("x", "a1", "a2", "b1", "c1")], nodes)
    assert [t.node_id for t in plan.trims] == ["a1"]


def test_no_trim_on_account_of_suspect_or_dead_holders() -> None:
    nodes = [node("a"), node("b"), node("c", SUSPECT), node("d", DEAD), node("e")]
    # Four holders but only two safe (alive) copies: R = 3 is not exceeded, keep all.
    plan = plan_repair([blob("x", "a", "b", "c", "d")], nodes)
    assert plan.trims == ()
    assert plan.copies == ()  # a, b, suspect c count as 3


def test_draining_node_is_a_source_its_copies_move_then_are_trimmed() -> None:
    nodes = [node("a", draining=True), node("b"), node("c"), node("d")]
    plan = plan_repair([blob("x", "a", "b", "c")], nodes)
    assert [(t.target, t.live_before) for t in plan.copies] == [("d", 3)]
    assert plan.trims == ()  # not before R copies exist elsewhere
    plan = plan_repair([blob("x", "a", "b", "c", "d")], nodes)
    assert plan.copies == ()
    assert [t.node_id for t in plan.trims] == ["a"]
    # Its only-copy blobs are copied away from it.
    plan = plan_repair([blob("y", "a", target=2)], nodes)
    assert {t.source for t in plan.copies} == {"a"}
    assert len(plan.copies) == 2


def test_in_flight_copies_are_not_duplicated_and_use_slots() -> None:
    nodes = [node(n) for n in "bcde"] + [node("a", DEAD)]
    blobs = [blob("x", "a", "b", "c"), blob("y", "a", "b", "d")]
    running = [CopyTask(blob_id="x", size=GB, source="b", target="d", live_before=2)]
    plan = plan_repair(blobs, nodes, in_flight=running, max_copies=2)
    assert [t.blob_id for t in plan.copies] == ["y"]
    assert plan_repair(blobs, nodes, in_flight=running, max_copies=1).copies == ()
    # A blob with a copy running is never trimmed (its source must stay).
    plan = plan_repair(
        [blob("z", "b", "c", "d", "e")],
        nodes,
        in_flight=[CopyTask(blob_id="z", size=GB, source="b", target="e", live_before=3)],
    )
    assert plan.trims == ()
    # A copy running to a node that has died does not count.
    gone = [CopyTask(blob_id="x", size=GB, source="b", target="a", live_before=2)]
    assert [t.blob_id for t in plan_repair(blobs[:1], nodes, in_flight=gone).copies] == ["x"]


def test_per_node_limits_spread_the_work() -> None:
    nodes = [node(n) for n in "bcdefg"] + [node("a", DEAD)]
    blobs = [blob(f"x{i}", "a", "b", "c") for i in range(6)]
    plan = plan_repair(blobs, nodes, per_node_copies=1, max_copies=10)
    sources = [t.source for t in plan.copies]
    targets = [t.target for t in plan.copies]
    assert len(sources) == len(set(sources)) == 2  # b and c send one each
    assert len(set(targets)) == len(targets)
    assert plan.deferred == 4


def test_copies_planned_in_one_round_respect_free_space() -> None:
    # Only d has room, and only for one 600 GB blob above nothing else.
    nodes = [node("a", DEAD), node("b"), node("c"), node("d", free=700 * GB)]
    blobs = [blob("x", "a", "b", "c", size=600 * GB), blob("y", "a", "b", "c", size=600 * GB)]
    plan = plan_repair(blobs, nodes)
    assert len(plan.copies) == 1
    assert plan.copies[0].blob_id == "x"  # same size and level: blob id decides
    assert plan.unplaceable == ("y",)


@pytest.mark.parametrize("kwargs", [{"max_copies": -1}, {"per_node_copies": 0}, {"max_trims": -1}])
def test_invalid_limits(kwargs: dict[str, int]) -> None:
    with pytest.raises(InvalidRequest):
        plan_repair([], [], **kwargs)  # type: ignore[arg-type]


def test_target_below_one_is_refused() -> None:
    # Trimming to zero copies would be a deletion; that is retention's job, not repair's.
    with pytest.raises(InvalidRequest):
        blob("x", "a", target=0)
    with pytest.raises(InvalidRequest):
        blob("x", "a", size=-1)


def test_max_trims() -> None:
    nodes = [node(n) for n in "abcde"]
    plan = plan_repair([blob(f"x{i}", *"abcde") for i in range(3)], nodes, max_trims=4)
    assert len(plan.trims) == 4


# -- properties -----------------------------------------------------------------------

NODE_IDS = [f"n{i}" for i in range(8)]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[NodeInfo], list[BlobReplicas]]:
    nodes = [
        node(
            n,
            draw(st.sampled_from([ALIVE, ALIVE, ALIVE, SUSPECT, DEAD])),
            zone=f"z{draw(st.integers(0, 3))}",
            free=draw(st.integers(0, 10)) * 100 * GB,
            draining=draw(st.integers(0, 5)) == 0,
        )
        for n in NODE_IDS
    ]
    blobs = [
        blob(
            f"blob-{i}",
            *draw(st.sets(st.sampled_from([*NODE_IDS, "ghost"]), min_size=1, max_size=6)),
            size=draw(st.integers(1, 300)) * GB,
            target=draw(st.integers(1, 4)),
        )
        for i in range(draw(st.integers(0, 25)))
    ]
    return nodes, blobs


@settings(max_examples=200, deadline=None)
@given(
    scenario=scenarios(),
    max_copies=st.integers(0, 12),
    per_node=st.none() | st.integers(1, 3),
)
def test_plan_invariants(
    scenario: tuple[list[NodeInfo], list[BlobReplicas]], max_copies: int, per_node: int | None
) -> None:
    nodes, blobs = scenario
    by_id = {n.node_id: n for n in nodes}
    by_blob = {b.blob_id: b for b in blobs}
    plan = plan_repair(blobs, nodes, max_copies=max_copies, per_node_copies=per_node)

    assert len(plan.copies) <= max_copies
    assert len({(t.blob_id, t.target) for t in plan.copies}) == len(plan.copies)
    planned_bytes: dict[str, int] = {}
    for task in plan.copies:
        b = by_blob[task.blob_id]
        source, target = by_id[task.source], by_id[task.target]
        assert task.source in b.replicas
        assert source.state is ALIVE  # never from a suspect or dead node
        assert task.target not in b.replicas
        planned_bytes[task.target] = planned_bytes.get(task.target, 0) + b.size
        assert target.fits(planned_bytes[task.target])  # alive, not draining, room left
    # Most endangered first.
    levels = [t.live_before for t in plan.copies]
    assert levels == sorted(levels)
    if per_node is not None:
        for ids in ([t.source for t in plan.copies], [t.target for t in plan.copies]):
            assert all(ids.count(n) <= per_node for n in set(ids))

    def live(b: BlobReplicas) -> list[str]:
        return [n for n in b.replicas if n in by_id and by_id[n].state is ALIVE]

    def counted(b: BlobReplicas) -> int:
        return sum(
            n in by_id
            and (by_id[n].state is SUSPECT or (by_id[n].state is ALIVE and not by_id[n].draining))
            for n in b.replicas
        )

    copied = {t.blob_id for t in plan.copies}
    for b in blobs:
        copies = sum(t.blob_id == b.blob_id for t in plan.copies)
        assert copies <= max(0, b.target - counted(b))  # never more than missing
        if b.blob_id in plan.unavailable:
            assert not live(b)
    # Without per-node limits, a blob that got nothing while slots ran out is no more
    # endangered than the last copy scheduled.
    if per_node is None and plan.copies and len(plan.copies) == max_copies:
        for b in blobs:
            needy = counted(b) < b.target and live(b) and b.blob_id not in plan.unplaceable
            if needy and b.blob_id not in copied:
                assert len(live(b)) >= plan.copies[-1].live_before

    # Trims never leave fewer than R copies on alive, non-draining nodes.
    trimmed: dict[str, set[str]] = {}
    for trim in plan.trims:
        assert trim.blob_id not in copied
        assert by_id[trim.node_id].state is ALIVE
        trimmed.setdefault(trim.blob_id, set()).add(trim.node_id)
    for blob_id, gone in trimmed.items():
        b = by_blob[blob_id]
        safe = [n for n in live(b) if not by_id[n].draining and n not in gone]
        assert len(safe) >= b.target
        assert len(safe) == b.target or not (gone - {n for n in gone if by_id[n].draining})


@settings(max_examples=100, deadline=None)
@given(scenario=scenarios(), max_copies=st.integers(1, 6))
def test_repeated_rounds_converge_to_r(
    scenario: tuple[list[NodeInfo], list[BlobReplicas]], max_copies: int
) -> None:
    """Run the loop: apply each plan (copies succeed, trims happen) until nothing is left.
    Every blob with a readable copy then has R safe copies or is reported unplaceable."""
    nodes, blobs = scenario
    by_id = {n.node_id: n for n in nodes}
    state = {b.blob_id: b for b in blobs}
    for _ in range(200):
        plan = plan_repair(state.values(), by_id.values(), max_copies=max_copies)
        if not plan.copies and not plan.trims:
            break
        for task in plan.copies:
            b = state[task.blob_id]
            state[task.blob_id] = msgspec.structs.replace(b, replicas=b.replicas | {task.target})
            n = by_id[task.target]
            by_id[task.target] = msgspec.structs.replace(n, free_bytes=n.free_bytes - b.size)
        for trim in plan.trims:
            b = state[trim.blob_id]
            state[trim.blob_id] = msgspec.structs.replace(b, replicas=b.replicas - {trim.node_id})
    else:
        raise AssertionError("repair did not converge")
    for b in state.values():
        holders = [by_id[n] for n in b.replicas if n in by_id]
        if b.blob_id in plan.unavailable or b.blob_id in plan.unplaceable:
            continue
        counted = [
            n for n in holders if n.state is SUSPECT or (n.state is ALIVE and not n.draining)
        ]
        assert len(counted) >= b.target
        safe = [n for n in holders if n.state is ALIVE and not n.draining]
        assert len(safe) <= b.target  # surplus trimmed
        assert not any(n.draining and n.state is ALIVE for n in holders) or len(safe) < b.target

"""The node registry the coordinator runs (SQL, on SQLite and PostgreSQL): identity,
figures, liveness as the leader records it, inventories and holders.

These were the in-memory reference registry's tests; that registry ran nowhere but in
them, so they moved onto the one that runs. The state machine at the end drives it with
nodes that heartbeat, pause (SIGSTOP) and resume while the clock advances.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from typing import Any

import pytest
from coordinator_kit import database_url  # noqa: F401  (fixture)
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from slidestore.cluster import InvalidNodeReport, LivenessTimeouts, NodeInfo, NodeState
from slidestore.cluster.errors import NodeUnknown, UnknownNode
from slidestore.cluster.wire import BlobRef, Heartbeat, NodeReport, Register
from slidestore.errors import SlidestoreError
from slidestore_server.coordinator import registry
from slidestore_server.coordinator.db import create_engine, create_schema
from slidestore_server.coordinator.schema import metadata, replicas

TB = 10**12
TIMEOUTS = LivenessTimeouts(suspect_after=3.0, dead_after=10.0)


def blob(name: str) -> str:
    """A blob id per short name (the catalog stores real 64-hex ids)."""
    return (name.encode().hex() * 64)[:64]


def report(free: int = TB, used: int = 0, load: float = 0.0) -> NodeReport:
    return NodeReport(capacity_bytes=TB, free_bytes=free, used_bytes=used, load=load)


def refs(*names: str) -> tuple[BlobRef, ...]:
    return tuple(BlobRef(blob_id=blob(n), size=1) for n in names)


class Registry:
    """The SQL registry's functions on one database, each call its own transaction, and
    the leader's liveness pass (``changed_states`` then ``record_states``) as ``tick``."""

    def __init__(self, engine: AsyncEngine, loop: asyncio.AbstractEventLoop) -> None:
        self.engine, self.loop = engine, loop

    def _run[T](self, call: Awaitable[T]) -> T:
        return self.loop.run_until_complete(call)

    def _tx(self, fn: Any, *args: Any) -> Any:
        async def go() -> Any:
            async with self.engine.begin() as conn:
                return await fn(conn, *args)

        return self._run(go())

    def register(self, node_id: str, now: float, *names: str, url: str = "http://n") -> None:
        message = Register(node_id=node_id, url=url, report=report(), inventory=refs(*names))
        self._tx(registry.register, message, now, 3)

    def heartbeat(
        self,
        node_id: str,
        now: float,
        *,
        added: tuple[str, ...] = (),
        removed: tuple[str, ...] = (),
        figures: NodeReport | None = None,
    ) -> None:
        message = Heartbeat(
            report=figures or report(),
            added=refs(*added),
            removed=tuple(blob(n) for n in removed),
        )
        self._tx(registry.heartbeat, node_id, message, now, 3)

    def tick(self, now: float) -> list[NodeInfo]:
        changed: list[NodeInfo] = self._tx(registry.changed_states, now, TIMEOUTS)
        self._tx(registry.record_states, changed)
        return changed

    def nodes(self, now: float) -> list[NodeInfo]:
        found: list[NodeInfo] = self._tx(registry.all_nodes, now, TIMEOUTS)
        return found

    def node(self, node_id: str, now: float) -> NodeInfo:
        return next(n for n in self.nodes(now) if n.node_id == node_id)

    def set_draining(self, node_id: str, draining: bool = True) -> None:
        self._tx(registry.set_draining, node_id, draining)

    def replica_map(self) -> dict[str, set[str]]:
        async def read(conn: Any) -> dict[str, set[str]]:
            rows = await conn.execute(
                select(replicas.c.blob_id, replicas.c.node_id).where(
                    replicas.c.quarantined.is_(False)
                )
            )
            out: dict[str, set[str]] = {}
            for blob_id, node_id in rows:
                out.setdefault(blob_id, set()).add(node_id)
            return out

        result: dict[str, set[str]] = self._tx(read)
        return result

    def holders(self, name: str) -> set[str]:
        return self.replica_map().get(blob(name), set())

    def inventory(self, node_id: str) -> set[str]:
        return {b for b, holders in self.replica_map().items() if node_id in holders}

    def clear(self) -> None:
        async def wipe(conn: Any) -> None:
            for table in reversed(metadata.sorted_tables):
                await conn.execute(delete(table))

        self._tx(wipe)
        # The singleton rows (change serial, leader, identity) come back as on a new database.
        self._run(create_schema(self.engine))


@pytest.fixture
def reg(database_url: str) -> Iterator[Registry]:  # noqa: F811
    loop = asyncio.new_event_loop()
    engine = create_engine(database_url)
    loop.run_until_complete(create_schema(engine))
    try:
        yield Registry(engine, loop)
    finally:
        loop.run_until_complete(engine.dispose())
        loop.close()


def test_lifecycle_alive_suspect_dead_alive(reg: Registry) -> None:
    reg.register("a", 0.0, url="http://a")
    assert reg.node("a", 0.0).state is NodeState.ALIVE and reg.node("a", 0.0).url == "http://a"
    assert reg.tick(2.9) == []
    assert [(n.node_id, n.state) for n in reg.tick(3.0)] == [("a", NodeState.SUSPECT)]
    assert reg.tick(9.0) == []  # recorded once
    assert [n.state for n in reg.tick(10.0)] == [NodeState.DEAD]
    reg.heartbeat("a", 15.0, figures=report(free=TB // 2, used=TB // 2, load=0.5))
    node = reg.node("a", 15.0)
    assert (node.state, node.free_bytes, node.load, node.last_heartbeat) == (
        NodeState.ALIVE,
        TB // 2,
        0.5,
        15.0,
    )
    assert reg.tick(15.5) == []  # the heartbeat stored ALIVE itself


def test_a_long_jump_goes_straight_to_dead(reg: Registry) -> None:
    reg.register("a", 0.0)
    assert [n.state for n in reg.tick(60.0)] == [NodeState.DEAD]


def test_reregistration_keeps_draining_and_replaces_inventory(reg: Registry) -> None:
    reg.register("a", 0.0, "b1", "b2", url="http://old")
    reg.set_draining("a")
    reg.register("a", 1.0, "b2", "b3", url="http://new")  # a full report replaces
    node = reg.node("a", 1.0)
    assert node.url == "http://new" and node.draining
    assert reg.inventory("a") == {blob("b2"), blob("b3")}
    assert reg.holders("b1") == set()
    reg.set_draining("a", False)
    assert not reg.node("a", 1.0).draining


def test_inventory_deltas_and_holders(reg: Registry) -> None:
    reg.register("a", 0.0)
    reg.register("b", 0.0)
    reg.heartbeat("a", 1.0, added=("x", "y"))
    reg.heartbeat("b", 1.0, added=("x",))
    reg.heartbeat("a", 2.0, removed=("x",))
    assert reg.holders("x") == {"b"} and reg.holders("y") == {"a"}
    assert reg.replica_map() == {blob("x"): {"b"}, blob("y"): {"a"}}


def test_dead_nodes_keep_their_inventory_for_readoption(reg: Registry) -> None:
    reg.register("a", 0.0, "x")
    reg.tick(30.0)
    assert reg.node("a", 30.0).state is NodeState.DEAD
    assert reg.holders("x") == {"a"}  # still known: counts again the moment it returns
    reg.heartbeat("a", 31.0)
    assert reg.node("a", 31.0).state is NodeState.ALIVE


def test_unknown_node_and_bad_reports(reg: Registry) -> None:
    with pytest.raises(NodeUnknown) as info:
        reg.heartbeat("ghost", 0.0)
    assert isinstance(info.value, UnknownNode) and isinstance(info.value, KeyError)
    assert isinstance(info.value, KeyError) and isinstance(info.value, SlidestoreError)
    assert str(info.value) == "node ghost is not registered"
    with pytest.raises(NodeUnknown):
        reg.set_draining("ghost")
    for bad in (
        NodeReport(capacity_bytes=TB, free_bytes=2 * TB, used_bytes=0),
        NodeReport(capacity_bytes=TB, free_bytes=-1, used_bytes=0),
    ):
        with pytest.raises(InvalidNodeReport):
            reg._tx(registry.register, Register(node_id="a", url="u", report=bad), 0.0, 3)
    with pytest.raises(InvalidNodeReport):
        reg._tx(registry.register, Register(node_id="", url="u", report=report()), 0.0, 3)
    reg.register("a", 0.0)
    with pytest.raises(InvalidNodeReport):
        reg.heartbeat(
            "a", 1.0, figures=NodeReport(capacity_bytes=TB, free_bytes=TB + 1, used_bytes=0)
        )


def test_nodes_are_listed_in_id_order(reg: Registry) -> None:
    for node_id in ["c", "a", "b"]:
        reg.register(node_id, 0.0)
    assert [n.node_id for n in reg.nodes(0.0)] == ["a", "b", "c"]


# -- the state machine ---------------------------------------------------------------

INTERVAL = 1.0  # heartbeat period of a running node
NODE_IDS = ["n1", "n2", "n3", "n4"]
BLOB_NAMES = ["b1", "b2", "b3", "b4", "b5"]


class RegistryMachine(RuleBasedStateMachine):
    """One database per run of the test, emptied for each example."""

    reg: Registry

    def __init__(self) -> None:
        super().__init__()
        self.reg.clear()
        self.now = 0.0
        self.last_heartbeat: dict[str, float] = {}
        self.running: dict[str, bool] = {}
        self.inventory: dict[str, set[str]] = {}
        self.recorded: dict[str, NodeState] = {}  # what the leader's ticks stored

    @rule(node_id=st.sampled_from(NODE_IDS), blobs=st.sets(st.sampled_from(BLOB_NAMES)))
    def register(self, node_id: str, blobs: set[str]) -> None:
        self.reg.register(node_id, self.now, *sorted(blobs))
        self.last_heartbeat[node_id] = self.now
        self.running[node_id] = True
        self.inventory[node_id] = {blob(b) for b in blobs}
        self.recorded[node_id] = NodeState.ALIVE

    @precondition(lambda self: self.running)
    @rule(
        data=st.data(),
        added=st.sets(st.sampled_from(BLOB_NAMES), max_size=2),
        removed=st.sets(st.sampled_from(BLOB_NAMES), max_size=2),
    )
    def heartbeat(self, data: st.DataObject, added: set[str], removed: set[str]) -> None:
        """An extra heartbeat (a paused node cannot send one) carrying inventory changes."""
        node_id = data.draw(st.sampled_from(sorted(self.running)))
        if not self.running[node_id]:
            return
        removed -= added  # a node reports a blob either as new or as gone, not both
        self.reg.heartbeat(node_id, self.now, added=tuple(added), removed=tuple(removed))
        self.last_heartbeat[node_id] = self.now
        self.recorded[node_id] = NodeState.ALIVE
        gone = {blob(b) for b in removed}
        self.inventory[node_id] = (self.inventory[node_id] - gone) | {blob(b) for b in added}

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def pause(self, data: st.DataObject) -> None:
        self.running[data.draw(st.sampled_from(sorted(self.running)))] = False

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def resume(self, data: st.DataObject) -> None:
        """SIGCONT: the node's overdue heartbeat goes out at once."""
        node_id = data.draw(st.sampled_from(sorted(self.running)))
        if not self.running[node_id]:
            self.running[node_id] = True
            self.reg.heartbeat(node_id, self.now)
            self.last_heartbeat[node_id] = self.now
            self.recorded[node_id] = NodeState.ALIVE

    @rule(seconds=st.floats(0.01, 15.0))
    def advance(self, seconds: float) -> None:
        """Time passes in heartbeat-sized steps; running nodes heartbeat, the leader ticks."""
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + INTERVAL)
            for node_id, running in sorted(self.running.items()):
                if running and self.now - self.last_heartbeat[node_id] >= INTERVAL:
                    self.reg.heartbeat(node_id, self.now)
                    self.last_heartbeat[node_id] = self.now
                    self.recorded[node_id] = NodeState.ALIVE
            self.absorb(self.reg.tick(self.now))

    def absorb(self, changed: list[NodeInfo]) -> None:
        for node in changed:
            assert node.state is not self.recorded[node.node_id], "a change that changes nothing"
            if node.state is NodeState.DEAD:
                # Never dead before the full dead timeout of silence.
                assert self.now - self.last_heartbeat[node.node_id] >= TIMEOUTS.dead_after
            self.recorded[node.node_id] = node.state

    @invariant()
    def liveness_matches_silence(self) -> None:
        for node in self.reg.nodes(self.now):
            silence = self.now - self.last_heartbeat[node.node_id]
            if silence < TIMEOUTS.suspect_after:
                assert node.state is NodeState.ALIVE
            elif silence < TIMEOUTS.dead_after:
                assert node.state is NodeState.SUSPECT
            else:
                assert node.state is NodeState.DEAD

    @invariant()
    def running_nodes_are_never_suspected(self) -> None:
        for node in self.reg.nodes(self.now):
            if self.running[node.node_id]:
                assert node.state is NodeState.ALIVE

    @invariant()
    def a_tick_records_the_shown_states(self) -> None:
        self.absorb(self.reg.tick(self.now))
        assert self.reg.tick(self.now) == []  # recorded: nothing left to change
        for node in self.reg.nodes(self.now):
            assert self.recorded[node.node_id] is node.state

    @invariant()
    def inventories_and_holders_agree(self) -> None:
        expected: dict[str, set[str]] = {}
        for node_id, blobs in self.inventory.items():
            for blob_id in blobs:
                expected.setdefault(blob_id, set()).add(node_id)
        assert self.reg.replica_map() == expected


def test_registry_state_machine(database_url: str) -> None:  # noqa: F811
    loop = asyncio.new_event_loop()
    engine = create_engine(database_url)
    loop.run_until_complete(create_schema(engine))
    RegistryMachine.reg = Registry(engine, loop)
    try:
        run = RegistryMachine.TestCase
        # PostgreSQL commits cost more than SQLite's: fewer runs there, same rules.
        examples = 8 if database_url.startswith("sqlite") else 4
        run.settings = settings(max_examples=examples, stateful_step_count=20, deadline=None)
        run().runTest()
    finally:
        loop.run_until_complete(engine.dispose())
        loop.close()

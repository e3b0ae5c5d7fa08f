"""The registry against a model of nodes that heartbeat, pause (SIGSTOP) and resume.

Running nodes heartbeat every second while the clock advances, as real ones do; a paused
node is silent until it resumes. After every step the registry must agree with liveness
computed independently from the model's last-heartbeat times, and the transitions it
reports must replay to the states it shows.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from slidestore.cluster import LivenessTimeouts, NodeState, Registry

SUSPECT = 3.0
DEAD = 10.0
INTERVAL = 1.0  # heartbeat period of a running node
TB = 10**12
NODE_IDS = ["n1", "n2", "n3", "n4"]
BLOB_IDS = ["b1", "b2", "b3", "b4", "b5"]


class RegistryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.registry = Registry(LivenessTimeouts(suspect_after=SUSPECT, dead_after=DEAD))
        self.now = 0.0
        self.last_heartbeat: dict[str, float] = {}
        self.running: dict[str, bool] = {}
        self.inventory: dict[str, set[str]] = {}
        self.seen: dict[str, NodeState] = {}  # states replayed from reported transitions
        self.last_transition_at = float("-inf")

    # -- actions --------------------------------------------------------------------------

    @rule(node_id=st.sampled_from(NODE_IDS), blobs=st.sets(st.sampled_from(BLOB_IDS)))
    def register(self, node_id: str, blobs: set[str]) -> None:
        self.registry.register(
            node_id, now=self.now, capacity_bytes=TB, free_bytes=TB, inventory=blobs
        )
        self.last_heartbeat[node_id] = self.now
        self.running[node_id] = True
        self.inventory[node_id] = set(blobs)
        self.seen.setdefault(node_id, NodeState.ALIVE)

    @precondition(lambda self: self.running)
    @rule(
        data=st.data(),
        added=st.sets(st.sampled_from(BLOB_IDS), max_size=2),
        removed=st.sets(st.sampled_from(BLOB_IDS), max_size=2),
    )
    def heartbeat(self, data: st.DataObject, added: set[str], removed: set[str]) -> None:
        """An extra heartbeat (a paused node cannot send one) carrying inventory changes."""
        node_id = data.draw(st.sampled_from(sorted(self.running)))
        if not self.running[node_id]:
            return
        removed -= added  # a node reports a blob either as new or as gone, not both
        self.registry.heartbeat(
            node_id, now=self.now, free_bytes=TB, used_bytes=0, added=added, removed=removed
        )
        self.last_heartbeat[node_id] = self.now
        self.inventory[node_id] = (self.inventory[node_id] - removed) | added

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
            self.registry.heartbeat(node_id, now=self.now, free_bytes=TB, used_bytes=0)
            self.last_heartbeat[node_id] = self.now

    @rule(seconds=st.floats(0.01, 15.0))
    def advance(self, seconds: float) -> None:
        """Time passes in heartbeat-sized steps; running nodes heartbeat, the loop ticks."""
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + INTERVAL)
            for node_id, running in sorted(self.running.items()):
                if running and self.now - self.last_heartbeat[node_id] >= INTERVAL:
                    self.registry.heartbeat(node_id, now=self.now, free_bytes=TB, used_bytes=0)
                    self.last_heartbeat[node_id] = self.now
            self.absorb(self.registry.tick(self.now))

    @rule()
    def tick(self) -> None:
        self.absorb(self.registry.tick(self.now))

    def absorb(self, transitions: list) -> None:  # type: ignore[type-arg]
        for t in transitions:
            assert t.before is self.seen[t.node_id], "transition from a state not shown"
            assert t.before is not t.after
            assert t.at >= self.last_transition_at, "transitions out of order"
            if t.after is NodeState.DEAD:
                # Never dead before the full dead timeout of silence.
                assert t.at - self.last_heartbeat[t.node_id] >= DEAD
            self.last_transition_at = t.at
            self.seen[t.node_id] = t.after

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def liveness_matches_silence(self) -> None:
        for node in self.registry.nodes():
            silence = self.now - self.last_heartbeat[node.node_id]
            if silence < SUSPECT:
                assert node.state is NodeState.ALIVE  # heard from within the suspect timeout
            elif silence < DEAD:
                assert node.state is NodeState.SUSPECT
            else:
                assert node.state is NodeState.DEAD

    @invariant()
    def running_nodes_are_never_suspected(self) -> None:
        for node_id, running in self.running.items():
            if running:
                assert self.registry.node(node_id).state is NodeState.ALIVE

    @invariant()
    def replayed_transitions_reach_the_shown_states(self) -> None:
        # Transitions pending since the last tick (revivals by heartbeat) are drained here.
        self.absorb(self.registry.tick(self.now))
        for node in self.registry.nodes():
            assert self.seen[node.node_id] is node.state

    @invariant()
    def inventories_and_holders_agree(self) -> None:
        for node_id, blobs in self.inventory.items():
            assert self.registry.inventory(node_id) == blobs
        expected: dict[str, set[str]] = {}
        for node_id, blobs in self.inventory.items():
            for blob in blobs:
                expected.setdefault(blob, set()).add(node_id)
        assert self.registry.replica_map() == expected


RegistryMachine.TestCase.settings = settings(
    max_examples=120, stateful_step_count=40, deadline=None
)
test_registry_state_machine = RegistryMachine.TestCase

"""Repair planning: which copies to start and which surplus replicas to delete, now.

A pure function of the replica map, the node states and the copies already running; the
repair loop calls it every round and starts what it returns. How replicas are judged:

==============================  =========  ================  ==============  ==========
holder is                       readable   counts toward R   copy source     trimmable
==============================  =========  ================  ==============  ==========
alive                           yes        yes               yes             if surplus
alive, draining                 yes        no                yes             once R elsewhere
suspect                         no         yes (wait)        no              no
dead, or unknown to the caller  no         no                no              no (unreachable)
==============================  =========  ================  ==============  ==========

Suspect replicas still count so that a node pausing for a few seconds moves no data; they
are not used as sources because the copy would probably stall. A dead node's replicas are
not forgotten by the registry: when it returns they are alive again and count at once
(re-adoption), and any copy made meanwhile is surplus, trimmed back to R.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable

import msgspec

from slidestore.cluster.model import (
    BlobReplicas,
    CopyTask,
    NodeInfo,
    NodeState,
    RepairPlan,
    TrimTask,
)
from slidestore.cluster.placement import DEFAULT_CHOICES, place
from slidestore.errors import InvalidRequest

#: Copies running at once in the whole cluster unless configured otherwise: enough to
#: keep a few disks busy, few enough that tile reads on the sources stay fast.
DEFAULT_MAX_COPIES = 8


class _Need(msgspec.Struct, kw_only=True):
    """A blob that is short of copies, as the planner tracks it while scheduling."""

    blob: BlobReplicas
    readable: list[str]  # possible sources
    existing: set[str]  # counted holders + copies pending/planned: their zones are taken
    holders: set[str]  # every holder, any state: never a target
    live: int  # readable copies now
    pending: int  # copies running or planned in this plan
    missing: int  # copies still to schedule


def plan_repair(
    blobs: Iterable[BlobReplicas],
    nodes: Iterable[NodeInfo],
    *,
    max_copies: int = DEFAULT_MAX_COPIES,
    per_node_copies: int | None = None,
    in_flight: Iterable[CopyTask] = (),
    max_trims: int | None = None,
    choices: int = DEFAULT_CHOICES,
) -> RepairPlan:
    """Plan one repair round.

    ``max_copies`` bounds the copies running at once, those in ``in_flight`` included;
    ``per_node_copies`` (optional) bounds how many one node sends, and separately how many
    it receives, at once. Copies in flight to a live target count as copies the blob will
    have, so a round never duplicates a running copy.

    Order: copies are scheduled blob by blob in order of (readable copies + copies already
    running or planned, readable copies, size, blob id), re-queueing a blob after each of
    its copies. So every blob with one readable copy gets a second before any blob with two
    readable copies gets a third, and within a level smaller blobs go first: the number of
    blobs at risk falls fastest. When only the global limit binds the order is strict; a
    blob whose sources or targets are all at their per-node limit is skipped this round
    (``deferred``) so that copies between other nodes can still proceed.

    Targets come from :func:`slidestore.cluster.placement.place` with the blob's counted
    holders as ``existing`` (their zones are taken) and every holder excluded, against free
    space reduced by the copies this plan (and those in flight) will write.

    Trims: a blob with no copies in flight and at least R copies on alive, non-draining
    nodes loses its draining replicas and any copies beyond R, choosing first replicas
    whose zone is duplicated, then the fullest node. Never below R live copies: suspect
    and dead holders are not counted as safe, so nothing is trimmed on their account.
    """
    if max_copies < 0:
        raise InvalidRequest(f"max_copies must be >= 0, got {max_copies}")
    if per_node_copies is not None and per_node_copies < 1:
        raise InvalidRequest(f"per_node_copies must be >= 1, got {per_node_copies}")
    if max_trims is not None and max_trims < 0:
        raise InvalidRequest(f"max_trims must be >= 0, got {max_trims}")

    by_id = {node.node_id: node for node in nodes}
    running = list(in_flight)
    sends: Counter[str] = Counter(task.source for task in running)
    receives: Counter[str] = Counter(task.target for task in running)
    # Space the copies in flight will take, so this round does not pile onto the same node.
    incoming = dict.fromkeys(by_id, 0)
    for task in running:
        if task.target in incoming:
            incoming[task.target] += task.size
    copying = {task.blob_id for task in running}  # never trim these: a source may vanish
    pending_targets: dict[str, set[str]] = {}
    for task in running:
        target = by_id.get(task.target)
        if target is not None and target.state is not NodeState.DEAD:
            pending_targets.setdefault(task.blob_id, set()).add(task.target)

    def state_of(node_id: str) -> NodeState:
        node = by_id.get(node_id)
        return NodeState.DEAD if node is None else node.state

    needs: list[_Need] = []
    unavailable: list[str] = []
    trims: list[TrimTask] = []
    for blob in blobs:
        readable = sorted(n for n in blob.replicas if state_of(n) is NodeState.ALIVE)
        safe = [n for n in readable if not by_id[n].draining]
        counted = set(safe) | {n for n in blob.replicas if state_of(n) is NodeState.SUSPECT}
        pending = pending_targets.get(blob.blob_id, set()) - blob.replicas
        missing = blob.target - len(counted) - len(pending)
        if missing > 0:
            if not readable:
                unavailable.append(blob.blob_id)
                continue
            needs.append(
                _Need(
                    blob=blob,
                    readable=readable,
                    existing=counted | pending,
                    holders=set(blob.replicas) | pending,
                    live=len(readable),
                    pending=len(pending),
                    missing=missing,
                )
            )
        elif blob.blob_id not in copying and len(safe) >= blob.target:
            trims.extend(_trims(blob, readable, safe, by_id))

    copies, unplaceable, deferred = _schedule(
        needs,
        by_id,
        incoming,
        sends,
        receives,
        slots=max(0, max_copies - len(running)),
        per_node=per_node_copies,
        choices=choices,
    )
    trims.sort(key=lambda t: (not by_id[t.node_id].draining, t.blob_id, t.node_id))
    if max_trims is not None:
        trims = trims[:max_trims]
    return RepairPlan(
        copies=tuple(copies),
        trims=tuple(trims),
        unavailable=tuple(sorted(unavailable)),
        unplaceable=tuple(sorted(unplaceable)),
        deferred=deferred,
    )


def _trims(
    blob: BlobReplicas, readable: list[str], safe: list[str], by_id: dict[str, NodeInfo]
) -> list[TrimTask]:
    """Draining replicas, then copies beyond R, keeping zones distinct and nodes even."""
    out = [
        TrimTask(blob_id=blob.blob_id, node_id=n, size=blob.size)
        for n in readable
        if by_id[n].draining
    ]
    keep = list(safe)
    while len(keep) > blob.target:
        zones = Counter(by_id[n].zone for n in keep)
        # Duplicated zone first (losing it keeps every zone), then the fullest node.
        victim = min(keep, key=lambda n: (zones[by_id[n].zone] == 1, by_id[n].free_fraction, n))
        keep.remove(victim)
        out.append(TrimTask(blob_id=blob.blob_id, node_id=victim, size=blob.size))
    return out


def _schedule(
    needs: list[_Need],
    by_id: dict[str, NodeInfo],
    reserved: dict[str, int],
    sends: Counter[str],
    receives: Counter[str],
    *,
    slots: int,
    per_node: int | None,
    choices: int,
) -> tuple[list[CopyTask], list[str], int]:
    """Turn needs into copy tasks, most endangered first; returns (copies, unplaceable, deferred)."""
    # Node figures as they will be once the copies in flight and planned are written.
    view = {
        node_id: msgspec.structs.replace(node, free_bytes=node.free_bytes - reserved[node_id])
        if reserved[node_id]
        else node
        for node_id, node in by_id.items()
    }

    def priority(need: _Need) -> tuple[int, int, int, str]:
        return (need.live + need.pending, need.live, need.blob.size, need.blob.blob_id)

    heap = [(priority(need), index) for index, need in enumerate(needs)]
    heapq.heapify(heap)
    copies: list[CopyTask] = []
    unplaceable: list[str] = []
    deferred = 0
    limit = per_node if per_node is not None else float("inf")
    while heap and len(copies) < slots:
        _, index = heapq.heappop(heap)
        need = needs[index]
        blob = need.blob
        sources = [n for n in need.readable if sends[n] < limit]
        if not sources:
            deferred += need.missing
            continue
        source = min(sources, key=lambda n: (sends[n], by_id[n].load, n))
        busy = {n for n in view if receives[n] >= limit}
        targets = place(
            blob.blob_id,
            blob.size,
            view.values(),
            replicas=1,
            existing=need.existing,
            exclude=need.holders | busy,
            min_replicas=0,
            choices=choices,
        )
        if not targets:
            if busy and place(
                blob.blob_id,
                blob.size,
                view.values(),
                replicas=1,
                existing=need.existing,
                exclude=need.holders,
                min_replicas=0,
                choices=choices,
            ):
                deferred += need.missing  # a target exists, it is just busy this round
            else:
                unplaceable.append(blob.blob_id)
            continue
        target = targets[0]
        copies.append(
            CopyTask(
                blob_id=blob.blob_id,
                size=blob.size,
                source=source,
                target=target,
                live_before=need.live + need.pending,
            )
        )
        sends[source] += 1
        receives[target] += 1
        node = view[target]
        view[target] = msgspec.structs.replace(node, free_bytes=node.free_bytes - blob.size)
        need.existing.add(target)
        need.holders.add(target)
        need.pending += 1
        need.missing -= 1
        if need.missing:
            heapq.heappush(heap, (priority(need), index))
    deferred += sum(needs[index].missing for _, index in heap)
    return copies, unplaceable, deferred

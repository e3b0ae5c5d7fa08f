"""Rebalancing: a few moves at a time that even out how full the nodes are.

Placement keeps nodes level as blobs arrive, but a node that joins a filled cluster starts
empty and would fill only as new slides come in, while the old nodes stay near full. A
move copies one blob from the fullest node to the emptiest (streamed, hash-verified, like
a repair copy) and then drops the donor's copy, so a blob never has fewer than R copies.

Fill is ``1 - free/capacity`` as the nodes report it, over nodes that accept placements.
Moves stop once the fullest and the emptiest are within ``tolerance`` of each other, or
when no move is allowed. No move overshoots: the receiver never ends up fuller than the
donor, nor above the mean fill by more than half the tolerance. So the bytes moved stay
close to the least that must move (what the over-full nodes hold beyond the mean), and a
node is never asked to hand back what it just received.

Zones can make the mean unreachable: with R=2 over two zones every blob has a copy in
each, so a node joining zone A can only take copies from zone A's nodes, and zone A's
nodes end level with one another, emptier than zone B's. That is as level as the zone
rule allows; rebalancing never trades a zone away for fill.

The planner is pure and proposes at most ``max_moves``; the coordinator runs it only when
nothing needs repair, throttles the copies, and waits for fresh heartbeats between rounds
(the fill figures come from them).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from slidestore.cluster.model import BlobReplicas, CopyTask, NodeInfo
from slidestore.errors import InvalidRequest

#: Fill difference (fullest minus emptiest) below which nothing moves: 5 percentage points.
DEFAULT_TOLERANCE = 0.05


def fill(node: NodeInfo, free_bytes: int | None = None) -> float:
    """How full ``node`` is (0..1), optionally as if it had ``free_bytes`` free."""
    if node.capacity_bytes <= 0:
        return 1.0
    free = node.free_bytes if free_bytes is None else free_bytes
    return 1.0 - free / node.capacity_bytes


def fill_spread(nodes: Iterable[NodeInfo]) -> float:
    """Fullest minus emptiest fill over the nodes that accept placements (0 for < 2)."""
    fills = [fill(n) for n in nodes if n.accepts_placements]
    return max(fills) - min(fills) if len(fills) >= 2 else 0.0


def plan_rebalance(
    blobs: Iterable[BlobReplicas],
    nodes: Iterable[NodeInfo],
    *,
    max_moves: int,
    tolerance: float = DEFAULT_TOLERANCE,
    busy: Collection[str] = (),
) -> tuple[CopyTask, ...]:
    """Up to ``max_moves`` moves (``source`` donates, ``target`` receives), largest
    worthwhile blob first.

    Only blobs whose every replica sits on a node that accepts placements, with exactly
    ``target`` of them, are moved (anything else is repair's business), and none listed in
    ``busy``. A move never puts two replicas on one node and never reduces the number of
    distinct zones a blob is in.
    """
    if max_moves < 0:
        raise InvalidRequest(f"max_moves must be >= 0, got {max_moves}")
    if not 0 < tolerance < 1:
        raise InvalidRequest(f"tolerance must be in (0, 1), got {tolerance}")
    eligible = {n.node_id: n for n in nodes if n.accepts_placements}
    if len(eligible) < 2 or max_moves == 0:
        return ()
    capacity = sum(n.capacity_bytes for n in eligible.values())
    mean = 1.0 - sum(n.free_bytes for n in eligible.values()) / capacity
    free = {node_id: n.free_bytes for node_id, n in eligible.items()}

    held: dict[str, list[BlobReplicas]] = {node_id: [] for node_id in eligible}
    for blob in blobs:
        if (
            blob.blob_id in busy
            or len(blob.replicas) != blob.target
            or not blob.replicas <= eligible.keys()
        ):
            continue
        for node_id in blob.replicas:
            held[node_id].append(blob)
    for listed in held.values():
        listed.sort(key=lambda b: (-b.size, b.blob_id))

    def now(node_id: str) -> float:
        return fill(eligible[node_id], free[node_id])

    moves: list[CopyTask] = []
    moved: set[str] = set()
    while len(moves) < max_moves:
        ranked = sorted(eligible, key=lambda n: (now(n), n))
        if now(ranked[-1]) - now(ranked[0]) <= tolerance:
            break
        move = _best_move(ranked, held, eligible, free, moved, mean, tolerance)
        if move is None:
            break
        moves.append(move)
        moved.add(move.blob_id)
        free[move.source] += move.size
        free[move.target] -= move.size
    return tuple(moves)


def _best_move(
    ranked: list[str],
    held: dict[str, list[BlobReplicas]],
    eligible: dict[str, NodeInfo],
    free: dict[str, int],
    moved: set[str],
    mean: float,
    tolerance: float,
) -> CopyTask | None:
    """The first acceptable move: donors fullest first; for each, receivers emptiest first
    (any emptier node, so a copy the zone rule keeps from the emptiest node can still step
    towards it through a node in between); for each, the largest blob that fits."""
    for donor_id in reversed(ranked):
        donor = eligible[donor_id]
        donor_fill = fill(donor, free[donor_id])
        for receiver_id in ranked:
            receiver = eligible[receiver_id]
            if fill(receiver, free[receiver_id]) >= donor_fill:
                break
            for blob in held[donor_id]:
                if blob.blob_id in moved or receiver_id in blob.replicas:
                    continue
                if free[receiver_id] - receiver.reserve_bytes < blob.size:
                    continue
                receiver_after = fill(receiver, free[receiver_id] - blob.size)
                donor_after = fill(donor, free[donor_id] + blob.size)
                if receiver_after > donor_after or receiver_after > mean + tolerance / 2:
                    continue
                zones_before = {eligible[n].zone for n in blob.replicas}
                zones_after = {eligible[n].zone for n in blob.replicas - {donor_id}}
                zones_after.add(receiver.zone)
                if len(zones_after) < len(zones_before):
                    continue
                return CopyTask(
                    blob_id=blob.blob_id,
                    size=blob.size,
                    source=donor_id,
                    target=receiver_id,
                    live_before=blob.target,
                )
    return None

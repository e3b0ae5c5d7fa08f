"""Where the replicas of a blob go: weighted rendezvous hashing plus a free-space choice.

Ranking. Every (blob, node) pair gets a pseudo-random ``u`` in (0, 1] from a 64-bit
BLAKE2b of both ids; the node's rank key is ``-ln(u) / capacity`` (the "logarithmic
method" of weighted rendezvous hashing: ``-ln(u)/w`` is an exponential variable of rate
``w``, so the smallest key falls on each node with probability ``w / sum(w)``). Sorting by
it ranks all nodes for the blob. The ranking depends only on the two ids and the node's
capacity, so a node joining or leaving changes only the blobs for which it ranks (or
ranked) among the chosen ones, and those by exactly one replica.

Zones. Replicas are taken in rank order, one per zone, while eligible zones remain; only
then does a zone get a second replica. So a blob lands in ``min(R, eligible zones)``
distinct zones and never twice on one node.

Free space. Hashing alone balances *counts*: with 1-25 GB slides node fill drifts apart
by 5% on equal nodes, and by 15% on a 5:1 mix (weighted rendezvous over R > 1 replicas
favours small nodes). So for each replica we look at the best :data:`DEFAULT_CHOICES`
candidates of the ranking and take the one that keeps the largest free fraction once the
blob is on it ("the power of d choices": with d >= 2 the fullest node stays a bounded
number of blobs above the average however many blobs are placed). On equal headroom the
better-ranked candidate wins, so on an evenly filled cluster of equal nodes placement *is*
the rendezvous ranking, and ``choices=1`` gives the bare ranking on any cluster.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Iterable, Sequence

import msgspec

from slidestore.cluster.errors import NoPlacement
from slidestore.cluster.model import DEFAULT_REPLICAS, NodeInfo
from slidestore.errors import InvalidRequest

#: Candidates compared on free space for each replica (the top of the rendezvous ranking).
#: Filling 20 nodes to 70% with slide-sized blobs, the fullest node ends at 1.002-1.007x
#: the average with 2 choices on a 5:1 capacity mix, 1.001-1.002x with 4, 1.14-1.16x with
#: 1 (bare hashing); beyond 4 nothing measurable is gained while each blob's possible homes
#: spread over more nodes. Equal capacities: 1.05-1.08x with 1, ~1.001x from 2 on.
DEFAULT_CHOICES = 4

_TWO_TO_MINUS_53 = 2.0**-53


def hrw_hash(blob_id: str, node_id: str) -> int:
    """The stable 64-bit rendezvous hash of a (blob, node) pair: BLAKE2b of ``blob\\0node``."""
    digest = hashlib.blake2b(f"{blob_id}\x00{node_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _uniform(hash64: int) -> float:
    """Map a 64-bit hash to (0, 1]: the top 53 bits (all a double holds), shifted off zero
    so that ``-ln(u)`` is always finite."""
    return ((hash64 >> 11) + 1) * _TWO_TO_MINUS_53


def rank_key(blob_id: str, node_id: str, weight: float) -> float:
    """Rendezvous key of ``node_id`` for ``blob_id``, smaller ranks first: ``-ln(u) / weight``."""
    return -math.log(_uniform(hrw_hash(blob_id, node_id))) / weight


def rank(blob_id: str, nodes: Iterable[NodeInfo]) -> list[NodeInfo]:
    """Nodes with a positive capacity, best rendezvous candidate for ``blob_id`` first.

    Equal keys (never seen in practice: 53 random bits) fall back to the node id, so the
    order is a pure function of the ids and capacities, whatever order ``nodes`` come in.
    """
    # Hashing dominates placement time; copying a hasher primed with the blob id halves it
    # against hashing ``blob\0node`` from scratch for every node (same digest).
    primed = hashlib.blake2b(f"{blob_id}\x00".encode(), digest_size=8)
    log = math.log
    keyed: list[tuple[float, str, NodeInfo]] = []
    for node in nodes:
        if node.capacity_bytes <= 0:
            continue
        hasher = primed.copy()
        hasher.update(node.node_id.encode())
        u = _uniform(int.from_bytes(hasher.digest(), "big"))
        keyed.append((-log(u) / node.capacity_bytes, node.node_id, node))
    keyed.sort(key=_by_key_then_id)
    return [node for _, _, node in keyed]


def _by_key_then_id(item: tuple[float, str, NodeInfo]) -> tuple[float, str]:
    return item[0], item[1]


def _headroom(node: NodeInfo, size: int) -> float:
    """Free share of the node's capacity once the blob is on it: placement maximises it.

    Counting the blob itself makes a 25 GB slide prefer a large node over a small one with
    the same free fraction, where it is a smaller dent; comparing plain free fractions
    lets the small nodes of a 5:1 cluster overshoot the average by a few tenths of a per
    cent more (measured while choosing this rule, see ``test_placement_balance.py``).
    """
    return (node.free_bytes - size) / node.capacity_bytes


def place(
    blob_id: str,
    size: int,
    nodes: Iterable[NodeInfo],
    *,
    replicas: int = DEFAULT_REPLICAS,
    exclude: Collection[str] = (),
    existing: Collection[str] = (),
    min_replicas: int | None = None,
    choices: int = DEFAULT_CHOICES,
) -> tuple[str, ...]:
    """Choose ``replicas`` new nodes for a blob of ``size`` bytes; the first is the primary.

    ``existing`` are nodes that already hold a counted copy: they are never chosen again and
    their zones count as taken, so repair calls this with the survivors to add the missing
    copies. ``exclude`` are nodes never to choose (dead holders, saturated targets...).
    Eligible nodes are alive, not draining, and keep ``size`` bytes above their reserve.

    Returns as many nodes as it can up to ``replicas``; raises :class:`NoPlacement` if
    that is fewer than ``min_replicas`` (default: all of them). An upload that must not
    fail while one node is down passes ``min_replicas=1`` and lets repair add the rest.
    """
    if size < 0:
        raise InvalidRequest(f"blob size must be >= 0, got {size}")
    if replicas < 0:
        raise InvalidRequest(f"replicas must be >= 0, got {replicas}")
    if choices < 1:
        raise InvalidRequest(f"choices must be >= 1, got {choices}")
    needed = replicas if min_replicas is None else min(min_replicas, replicas)
    pool_nodes = nodes if isinstance(nodes, Sequence) else list(nodes)
    held = set(existing)
    taken_zones = {node.zone for node in pool_nodes if node.node_id in held}
    skip = held.union(exclude)
    candidates = rank(blob_id, (n for n in pool_nodes if n.node_id not in skip and n.fits(size)))

    chosen: list[str] = []
    while len(chosen) < replicas and candidates:
        # One replica per zone while untaken zones have eligible nodes; after that any zone.
        pool = [n for n in candidates if n.zone not in taken_zones] or candidates
        best = pool[0]
        best_room = _headroom(best, size)
        for node in pool[1:choices]:
            room = _headroom(node, size)
            if room > best_room:  # strict: on a tie the better-ranked node keeps the replica
                best, best_room = node, room
        chosen.append(best.node_id)
        taken_zones.add(best.zone)
        # By id, not identity: a node listed twice (stale record) must not get two replicas.
        candidates = [n for n in candidates if n.node_id != best.node_id]

    if len(chosen) < needed:
        raise NoPlacement(
            f"blob {blob_id} ({size} bytes) needs {needed} more node(s), "
            f"only {len(chosen)} eligible (alive, not draining, room above reserve)",
            needed=needed,
            found=len(chosen),
        )
    return tuple(chosen)


#: How long a node that refused a write for lack of space (507) is passed over, unless a
#: heartbeat after the refusal reports more room than it had then.
REFUSAL_SECONDS = 30.0


class Refusals:
    """Nodes that answered 507 to a write, remembered briefly so that placement and repair
    try the next node instead of the same full one again.

    A node's reported free space is a heartbeat old, and a node may refuse for reasons its
    report does not show yet (space promised a moment ago to an upload that sends nothing,
    a rendition being made). Such a node looks full — its free space counts as 0 in
    :meth:`apply` — until a heartbeat after the refusal reports more free space than the
    node reported when it refused, or ``seconds`` pass.
    """

    def __init__(self, seconds: float = REFUSAL_SECONDS) -> None:
        self.seconds = seconds
        self._refused: dict[str, tuple[float, float, int]] = {}  # id -> (at, until, free)

    def refused(self, node: NodeInfo, now: float) -> None:
        self._refused[node.node_id] = (now, now + self.seconds, node.free_bytes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._refused

    def _holds(self, node: NodeInfo, now: float) -> bool:
        """Whether ``node`` is still remembered as full (forgetting it if no longer)."""
        entry = self._refused.get(node.node_id)
        if entry is None:
            return False
        at, until, free = entry
        if now >= until or (node.last_heartbeat > at and node.free_bytes > free):
            del self._refused[node.node_id]  # room again (or time to ask again)
            return False
        return True

    def apply(self, nodes: Iterable[NodeInfo], now: float) -> list[NodeInfo]:
        """``nodes``, with those still remembered as full shown without free space."""
        return [
            msgspec.structs.replace(node, free_bytes=0) if self._holds(node, now) else node
            for node in nodes
        ]

    def without(self, nodes: Iterable[NodeInfo], now: float) -> list[NodeInfo]:
        """``nodes`` less those still remembered as full (for rebalancing, where a node
        shown as full would look like the fullest donor and skew the mean fill)."""
        return [node for node in nodes if not self._holds(node, now)]

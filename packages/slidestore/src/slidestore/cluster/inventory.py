"""What a node has told the coordinator about its blobs, and what it still has to tell.

Pure logic for the node's cluster agent. The agent takes a :class:`Snapshot` of the disk,
asks :meth:`InventoryTracker.delta` for the changes since the last *acknowledged*
message, and calls :meth:`InventoryTracker.acknowledge` only once the coordinator
answered. A heartbeat that fails therefore loses nothing: the next delta is computed
against the same acknowledged state and still carries every change.
"""

from __future__ import annotations

import msgspec

from slidestore.cluster.wire import BlobRef


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The node's blobs at one moment: healthy ones with sizes, and quarantined ids.

    Build it with :meth:`take`, which keeps the two disjoint.
    """

    blobs: dict[str, int]
    quarantined: frozenset[str] = frozenset()

    @classmethod
    def take(cls, blobs: dict[str, int], quarantined: set[str] | frozenset[str]) -> Snapshot:
        # A quarantined blob that was copied back (repaired) is healthy again: the healthy
        # copy wins, so no id is ever reported as both.
        return cls(blobs=blobs, quarantined=frozenset(quarantined) - blobs.keys())

    @property
    def used_bytes(self) -> int:
        return sum(self.blobs.values())

    def inventory(self) -> tuple[BlobRef, ...]:
        return tuple(BlobRef(blob_id=b, size=s) for b, s in sorted(self.blobs.items()))


class Delta(msgspec.Struct, frozen=True, kw_only=True):
    added: tuple[BlobRef, ...] = ()
    removed: tuple[str, ...] = ()
    quarantined: tuple[str, ...] = ()
    """Newly quarantined ids; they are not also listed in ``removed``."""

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.quarantined)


class InventoryTracker:
    """The last snapshot the coordinator acknowledged (None: it must get a full register)."""

    def __init__(self) -> None:
        self._acked: Snapshot | None = None

    @property
    def registered(self) -> bool:
        return self._acked is not None

    def forget(self) -> None:
        """The coordinator does not know us (404 ``node_unknown``): register again in full."""
        self._acked = None

    def delta(self, now: Snapshot) -> Delta:
        acked = self._acked if self._acked is not None else Snapshot(blobs={})
        newly_quarantined = now.quarantined - acked.quarantined
        return Delta(
            added=tuple(
                BlobRef(blob_id=b, size=s)
                for b, s in sorted(now.blobs.items())
                if acked.blobs.get(b) != s
            ),
            removed=tuple(
                sorted(b for b in acked.blobs if b not in now.blobs and b not in newly_quarantined)
            ),
            quarantined=tuple(sorted(newly_quarantined)),
        )

    def acknowledge(self, snapshot: Snapshot) -> None:
        """The coordinator now knows ``snapshot`` (the one the sent message came from)."""
        self._acked = snapshot

"""The node's disk figures as the coordinator sees them, with an optional capacity cap.

``capacity_bytes`` (0: the filesystem's size) lets a node on a big disk pretend to be
small — how the fault tests make a full node. The cap also feeds the blob store's
free-space guard, so a "full" node really refuses bytes instead of only reporting full.

The free space reported is net of what the node already promised (upload sessions'
bytes still to come, replicas being copied): the coordinator places new blobs by it, and
a node whose disk is promised away is full even while the bytes have not arrived.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from slidestore.blobs import BlobStore, free_bytes
from slidestore.cluster.wire import NodeReport


class Capacity:
    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._store: BlobStore | None = None

    def attach(self, store: BlobStore) -> None:
        self._store = store

    def free(self, root: Path) -> int:
        """The blob store's free-space function: the filesystem's, capped when configured."""
        fs_free = free_bytes(root)
        if not self.capacity_bytes or self._store is None:
            return fs_free
        # O(blobs): only nodes with a cap (tests, small nodes) pay for this walk.
        return max(0, min(fs_free, self.capacity_bytes - used_bytes(self._store)))

    def report(self, root: Path, *, used: int, reserve: int, promised: int = 0) -> NodeReport:
        """Figures for a registration or heartbeat; ``used`` comes from the agent's scan,
        ``promised`` from the blob store's free-space guard."""
        st = os.statvfs(root)
        fs_free = st.f_bavail * st.f_frsize
        if self.capacity_bytes:
            capacity = self.capacity_bytes
            free = max(0, min(fs_free, capacity - used))
        else:
            capacity = st.f_blocks * st.f_frsize
            free = fs_free
        return NodeReport(
            capacity_bytes=capacity,
            free_bytes=max(0, free - promised),
            used_bytes=used,
            reserve_bytes=reserve,
            load=os.getloadavg()[0],
        )


def used_bytes(store: BlobStore) -> int:
    total = 0
    for blob_id in store.ids():
        with contextlib.suppress(FileNotFoundError):  # deleted while we walk
            total += store.size(blob_id)
    return total

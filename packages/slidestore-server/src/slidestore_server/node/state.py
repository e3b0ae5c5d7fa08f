"""What a node's request handlers share, created and closed by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from slidestore_server.settings import NodeSettings

if TYPE_CHECKING:
    from slidestore.blobs import BlobStore
    from slidestore.uploads import UploadManager
    from slidestore_server.node.access import AccessLog
    from slidestore_server.node.capacity import Capacity
    from slidestore_server.node.changes import ChangeSignal
    from slidestore_server.node.foreground import Foreground
    from slidestore_server.node.render_budget import RenderBudget
    from slidestore_server.node.renditions import Prerenderer
    from slidestore_server.node.scrubber import Scrubber
    from slidestore_server.node.slides import SlideCache


@dataclass
class NodeState:
    settings: NodeSettings
    node_id: str
    blobs: BlobStore
    capacity: Capacity
    uploads: UploadManager
    slides: SlideCache
    changes: ChangeSignal
    """Notified after a blob appears or disappears (heartbeat now): see
    :meth:`blob_arrived` and :meth:`blobs_gone`."""
    scrubber: Scrubber
    renditions: Prerenderer
    foreground: Foreground
    """When people last asked this node for something: replica sends yield to them."""
    render_budget: RenderBudget
    """Memory the IIIF renders in progress may take together."""
    access: AccessLog
    """Blobs people read (tiles, zarr, downloads) since the last heartbeat."""

    def blob_arrived(self) -> None:
        """A blob was stored here (an upload completed, a replica was copied): every path
        that stores one calls this, so none forgets a step. The agent heartbeats it now
        (the coordinator counts the copy at once) and prerendering looks for new slides."""
        self.changes.notify()
        self.renditions.wake()

    def blobs_gone(self, blob_ids: list[str]) -> None:
        """Blobs were deleted or quarantined: drop their open slides, tell the agent."""
        for blob_id in blob_ids:
            self.slides.evict(blob_id)
        self.changes.notify()

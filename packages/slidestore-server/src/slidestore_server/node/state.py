"""What a node's request handlers share, created and closed by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from slidestore_server.settings import NodeSettings

if TYPE_CHECKING:
    from slidestore.blobs import BlobStore
    from slidestore.uploads import UploadManager
    from slidestore_server.node.slides import SlideCache


@dataclass
class NodeState:
    settings: NodeSettings
    blobs: BlobStore
    uploads: UploadManager
    slides: SlideCache

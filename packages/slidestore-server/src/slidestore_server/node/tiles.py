"""A Deep Zoom tile that is stored as is, checked, and its ETag: what the fast path
(``fastpath.py``) and the ``tile`` route (``routes/deepzoom.py``) both answer with.

A passthrough tile is bytes of the blob file; before they are served, the 64 KiB chunks
around them are read again and checked against the blob's checksums
(``slidestore.blobs.sums``), and the tile must be exactly those bytes. A copy that fails
is quarantined by the store and the read raises ``ReplicaCorrupt`` (503
``replica_corrupt``: the client reads another replica).
"""

from __future__ import annotations

from typing import Final

from slidestore.protocols.deepzoom.generator import DeepZoomTile
from slidestore.reading.jpeg import SOI
from slidestore_server.node.responses import RENDER_VERSION
from slidestore_server.node.slides import SlideEntry
from slidestore_server.node.state import NodeState

MEDIA_JPEG: Final = "image/jpeg"


def tile_etag(blob_id: str, level: int, col: int, row: int, fmt: str) -> str:
    """The tile's strong ETag, without quotes (its bytes never change under it)."""
    return f"{blob_id}-dz-{level}-{col}-{row}-{fmt}-{RENDER_VERSION}"


def stored_tile(
    node: NodeState, entry: SlideEntry, level: int, col: int, row: int, fmt: str
) -> DeepZoomTile | None:
    """The tile if it is stored as is (native or prerendered), checked; None when it
    has to be rendered. Costs two ``pread`` and a CRC of ~64 KiB: safe on the event loop."""
    tile = entry.deepzoom.stored_tile(level, col, row, fmt)
    if tile is None or not tile.passthrough:
        return tile
    native = entry.deepzoom.passthrough_level(level)
    extent = None if native is None else entry.slide.tile_extent(native, col, row)
    if extent is None or entry.fd is None:
        return None  # cannot check these bytes: render the tile instead
    offset, length = extent
    raw = node.blobs.read_checked(entry.blob_id, entry.fd, offset, offset + length)
    if not tile.data.endswith(raw.removeprefix(SOI)):
        # The slide read other bytes than the checked ones: changed between the reads.
        raise node.blobs.corrupt(entry.blob_id, f"tile bytes at {offset} changed while read")
    return tile

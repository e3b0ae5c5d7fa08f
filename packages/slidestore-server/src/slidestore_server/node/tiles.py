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

from slidestore.protocols import iiif
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
    raw = None if native is None else checked_native_tile(node, entry, native, col, row)
    if raw is None:
        return None  # cannot check these bytes: render the tile instead
    if not tile.data.endswith(raw.removeprefix(SOI)):
        # The slide read other bytes than the checked ones: changed between the reads.
        raise node.blobs.corrupt(entry.blob_id, f"tile ({col}, {row}) changed while read")
    return tile


def checked_native_tile(
    node: NodeState, entry: SlideEntry, native: int, col: int, row: int
) -> bytes | None:
    """The stored bytes of native tile (col, row), checked against the blob's sums
    (``ReplicaCorrupt`` if they fail); None when the file stores no JPEG data for it."""
    extent = entry.slide.tile_extent(native, col, row)
    if extent is None or entry.fd is None:
        return None
    offset, length = extent
    return node.blobs.read_checked(entry.blob_id, entry.fd, offset, offset + length)


def checked_zarr_key(node: NodeState, entry: SlideEntry, key: str) -> bytes | None:
    """A zarr key's bytes; a chunk of a native level only after its tile's stored bytes
    passed their checksums (blocking: call from a worker thread)."""
    address = entry.pyramid.chunk_address(key)
    if address is not None:
        level, col, row = address
        native = entry.pyramid.levels[level].native_level
        if native is not None:
            checked_native_tile(node, entry, native, col, row)
    return entry.pyramid.get_key(key)


def checked_iiif_tile(
    node: NodeState, entry: SlideEntry, plan: iiif.ImagePlan
) -> iiif.RenderedImage | None:
    """The IIIF answer when it is one stored native tile, checked; else None (render it)."""
    stored = iiif.stored_tile(entry.pyramid, plan)
    if stored is None:
        return None
    address = iiif.native_tile_address(entry.pyramid, iiif.choose_level(entry.pyramid, plan), plan)
    raw = None if address is None else checked_native_tile(node, entry, *address)
    if raw is None:
        return None
    if not stored.data.endswith(raw.removeprefix(SOI)):
        raise node.blobs.corrupt(entry.blob_id, f"tile {address} changed while read")
    return stored

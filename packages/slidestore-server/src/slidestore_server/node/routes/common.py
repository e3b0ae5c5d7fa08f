"""Helpers shared by the node's read routes."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from slidestore_server.node.slides import SlideEntry
from slidestore_server.node.state import NodeState
from slidestore_server.params import blob_id_param

__all__ = ["blob_id_param", "open_entry", "read_entry"]


async def open_entry(node: NodeState, blob_id: str) -> SlideEntry:
    """The open slide, from the handle cache when possible (no thread hop then)."""
    entry = node.slides.peek(blob_id)
    if entry is None:
        entry = await run_in_threadpool(node.slides.get, blob_id)
    return entry


async def read_entry(node: NodeState, blob_id: str) -> SlideEntry:
    """:func:`open_entry` for a read of the slide's pixels (tiles, regions, zarr chunks):
    counted as a use of the blob (``node/access.py``); its info and pictures are not."""
    entry = await open_entry(node, blob_id)
    node.access.touch(blob_id)
    return entry

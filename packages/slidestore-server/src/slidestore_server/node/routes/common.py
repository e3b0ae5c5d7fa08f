"""Helpers shared by the node's read routes."""

from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from slidestore.errors import InvalidBlobId
from slidestore_server.node.slides import SlideEntry
from slidestore_server.node.state import NodeState

_BLOB_ID = re.compile(r"[0-9a-f]{64}")


def check_blob_id(blob_id: str) -> str:
    if not _BLOB_ID.fullmatch(blob_id):
        raise InvalidBlobId(
            f"{blob_id[:80]!r} is not a blob id (64 lowercase hex digits of sha256)"
        )
    return blob_id


def blob_id_param(request: Request) -> str:
    return check_blob_id(str(request.path_params["blob_id"]))


async def open_entry(node: NodeState, blob_id: str) -> SlideEntry:
    """The open slide, from the handle cache when possible (no thread hop then)."""
    entry = node.slides.peek(blob_id)
    if entry is None:
        entry = await run_in_threadpool(node.slides.get, blob_id)
    return entry

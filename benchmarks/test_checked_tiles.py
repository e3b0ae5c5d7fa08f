"""What checking a passthrough tile costs the node (``slidestore_server.node.tiles``):
the stored tile as the fast path answers it, checked against the blob's chunk sums (a
second ``pread`` of the 64 KiB chunks around it and their CRC-32), beside the same tile
unchecked (``test_tiles.py::test_passthrough``). Same slide, same tile, same run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from slidestore.blobs import BlobStore
from slidestore_server.node import tiles
from slidestore_server.node.slides import SlideCache, SlideEntry
from slidestore_server.node.state import NodeState

NATIVE_TILE = (125, 104)  # as in test_tiles.py: an interior tissue tile of the deepest level
Record = Callable[[str, Any], None]


@pytest.fixture(scope="module")
def stored(
    slide_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[NodeState, SlideEntry]]:
    store = BlobStore(tmp_path_factory.mktemp("checked") / "blobs", reserve_bytes=0)
    blob_id = store.put_file(slide_path)
    cache = SlideCache(store, max_open=1, cache_bytes=64 << 20)
    try:
        yield cast(NodeState, SimpleNamespace(blobs=store)), cache.get(blob_id)
    finally:
        cache.close()


@pytest.mark.benchmark(group="1 passthrough (deepest level)")
def test_checked_passthrough(
    benchmark: Any, record: Record, stored: tuple[NodeState, SlideEntry]
) -> None:
    node, entry = stored
    level = entry.deepzoom.level_count - 1
    col, row = NATIVE_TILE
    unchecked = entry.deepzoom.stored_tile(level, col, row, "jpeg")
    assert unchecked is not None and unchecked.passthrough
    tile = benchmark(tiles.stored_tile, node, entry, level, col, row, "jpeg")
    assert tile is not None and tile.data == unchecked.data
    record("checked_passthrough", benchmark)

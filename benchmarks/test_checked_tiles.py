"""What checking a tile costs the node (``slidestore_server.node.tiles``): the stored
tile as the fast path answers it, checked against the blob's chunk sums (a second
``pread`` of the chunks around it and their CRC-32), beside the same tile unchecked
(``test_tiles.py::test_passthrough``); a rendered 2x tile made from checked source tiles
(the node's slide opens with a ``CheckedFile``) beside the same render unchecked
(``test_tiles.py::test_derived_cold``); and opening the slide with its structure checked
beside a plain open. Same slide, same tiles, same run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from slidestore import open_slide
from slidestore.blobs import BlobStore
from slidestore.protocols.deepzoom import DeepZoom
from slidestore.pyramid import PyramidOptions
from slidestore_server.node import tiles
from slidestore_server.node.slides import SlideCache, SlideEntry
from slidestore_server.node.state import NodeState

NATIVE_TILE = (125, 104)  # as in test_tiles.py: an interior tissue tile of the deepest level
DERIVED_TILE = (NATIVE_TILE[0] // 2, NATIVE_TILE[1] // 2)
COLD_ROUNDS = 30
OPEN_ROUNDS = 5
Record = Callable[[str, Any], None]


@pytest.fixture(scope="module")
def stored(
    slide_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[NodeState, SlideEntry]]:
    store = BlobStore(tmp_path_factory.mktemp("checked") / "blobs", reserve_bytes=0)
    blob_id = store.put_file(slide_path)
    cache = SlideCache(store, max_open=1, cache_bytes=64 << 20)
    try:
        yield cast(NodeState, SimpleNamespace(blobs=store, cache=cache)), cache.get(blob_id)
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


@pytest.mark.benchmark(group="3 derived 2x level")
def test_checked_derived_cold(
    benchmark: Any, record: Record, stored: tuple[NodeState, SlideEntry]
) -> None:
    """``test_tiles.py::test_derived_cold`` on the node's slide: every level-0 tile the
    render decodes is read checked (chunk-aligned ``pread`` + CRC-32)."""
    _, entry = stored
    level = entry.deepzoom.level_count - 2
    col, row = DERIVED_TILE

    def fresh() -> tuple[tuple[DeepZoom], dict[str, Any]]:
        return (DeepZoom(entry.slide.open_pyramid(PyramidOptions(persistent_cache=None))),), {}

    def request(dz: DeepZoom) -> bytes:
        info = dz.tile_with_info(level, col, row, "jpeg")
        assert not info.passthrough and not info.cached
        return info.data

    benchmark.pedantic(request, setup=fresh, rounds=COLD_ROUNDS, warmup_rounds=1)
    record("checked_derived_cold", benchmark)


@pytest.mark.benchmark(group="4 open")
def test_open(benchmark: Any, record: Record, stored: tuple[NodeState, SlideEntry]) -> None:
    """Opening the slide file as a library user does (no checks)."""
    _, entry = stored
    path = entry.slide.path
    benchmark.pedantic(lambda: open_slide(path).close(), rounds=OPEN_ROUNDS, warmup_rounds=1)
    record("open", benchmark)


@pytest.mark.benchmark(group="4 open")
def test_checked_open(benchmark: Any, record: Record, stored: tuple[NodeState, SlideEntry]) -> None:
    """The node's open: size check, then every byte outside the tile data (header,
    directories, tag arrays, associated images) checked before a reader parses it."""
    node, entry = stored
    cache: SlideCache = node.cache  # type: ignore[attr-defined]
    blob_id = entry.blob_id

    def reopen() -> None:
        cache.evict(blob_id)
        cache.get(blob_id)

    benchmark.pedantic(reopen, rounds=OPEN_ROUNDS, warmup_rounds=1)
    record("checked_open", benchmark)

"""What tracking last access costs the tile path (``slidestore_server.node.access``): the
node's fast path (``TileFastPath``, the pure-ASGI layer that answers stored Deep Zoom
tiles) serving one passthrough tile, with the node's real ``AccessLog`` (a set insertion
per tile) beside the same path with access tracking switched off (the path as it was
before). Same slide, same tile, same token, same run: compare the two medians."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from slidestore import tokens
from slidestore.blobs import BlobStore
from slidestore.testing import cached_svs
from slidestore.tokens import Operation
from slidestore_server.node.access import AccessLog
from slidestore_server.node.fastpath import TileFastPath
from slidestore_server.node.slides import SlideCache
from slidestore_server.node.state import NodeState

TILE = (3, 3)  # an interior tile of the deepest level of a 2000x1500 slide
SECRET = tokens.new_secret()
Record = Any


class Untracked(AccessLog):
    """The tile path before access tracking: ``touch`` does nothing."""

    def touch(self, blob_id: str) -> None:
        return None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], Any]]:
    root = tmp_path_factory.mktemp("access")
    store = BlobStore(root / "blobs", reserve_bytes=0)
    blob_id = store.put_file(cached_svs(2000, 1500, seed=11))
    cache = SlideCache(store, max_open=1, cache_bytes=64 << 20)
    entry = cache.get(blob_id)  # open: the fast path answers only open slides
    level = entry.deepzoom.level_count - 1
    token = tokens.mint(SECRET, ops={Operation.READ}, blob=blob_id, ttl=3600)
    scope = {
        "type": "http",
        "method": "GET",
        "path": f"/slides/{blob_id}_files/{level}/{TILE[0]}_{TILE[1]}.jpeg",
        "headers": [(b"authorization", f"Bearer {token}".encode())],
        "query_string": b"",
    }
    settings = SimpleNamespace(cache_max_age=3600)
    try:
        yield (
            scope,
            lambda access: cast(
                NodeState,
                SimpleNamespace(blobs=store, slides=cache, settings=settings, access=access),
            ),
        )
    finally:
        cache.close()


def _bench(benchmark: Any, served: tuple[dict[str, Any], Any], access: AccessLog) -> int:
    scope, make_node = served
    node = make_node(access)
    app = TileFastPath(lambda *a: None, node, tokens.Verifier(SECRET))  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    def one() -> None:
        sent.clear()
        loop.run_until_complete(app(dict(scope), None, send))  # type: ignore[arg-type]

    try:
        benchmark(one)
    finally:
        loop.close()
    assert sent and sent[0]["status"] == 200
    return len(sent[1]["body"])


@pytest.mark.benchmark(group="access tracking: fast-path tile")
def test_tile_untracked(benchmark: Any, served: tuple[dict[str, Any], Any], tmp_path: Path) -> None:
    assert _bench(benchmark, served, Untracked(tmp_path)) > 0


@pytest.mark.benchmark(group="access tracking: fast-path tile")
def test_tile_tracked(benchmark: Any, served: tuple[dict[str, Any], Any], tmp_path: Path) -> None:
    access = AccessLog(tmp_path)
    assert _bench(benchmark, served, access) > 0
    assert access.take() == {served[0]["path"].split("/")[2].removesuffix("_files")}

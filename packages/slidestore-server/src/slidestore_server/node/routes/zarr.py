"""The pyramid's zarr v3 keys over HTTP, so ``zarr.open_group("http://node/zarr/<id>")`` works.

Keys that do not exist answer 404 (zarr reads that as "missing"); chunk bytes are the
decoded tile, uncompressed, exactly as the in-process store returns them.

``GET /zarr/{id}?list=dir&prefix=P`` lists the names directly below ``P`` and
``?list=prefix&prefix=P`` every key starting with ``P`` (JSON ``{"keys": [...]}``), the
in-process store's ``list_dir``/``list_prefix``: what ``zarr``'s ``members()``/``tree()``
and ``list(store)`` need from a remote pyramid.
"""

from __future__ import annotations

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from slidestore.errors import InvalidRequest, OutOfBounds
from slidestore.tokens import Operation
from slidestore_server.auth import require
from slidestore_server.node.responses import RENDER_VERSION, immutable
from slidestore_server.node.routes.common import blob_id_param, open_entry, read_entry
from slidestore_server.node.routes.iiif import stable_digest
from slidestore_server.node.state import NodeState
from slidestore_server.node.tiles import checked_zarr_key

_encoder = msgspec.json.Encoder()


async def key(request: Request) -> Response:
    blob_id = blob_id_param(request)
    require(request, Operation.READ, blob_id)
    name = str(request.path_params["key"])
    node: NodeState = request.app.state.node
    entry = await read_entry(node, blob_id)
    data = await run_in_threadpool(checked_zarr_key, node, entry, name)
    if data is None:
        raise OutOfBounds(f"zarr key {name[:200]!r} does not exist in blob {blob_id}")
    media = "application/json" if name.endswith("zarr.json") else "application/octet-stream"
    return immutable(
        request,
        data,
        media,
        f"{blob_id}-zarr-{name.replace('/', '_')}-{RENDER_VERSION}",
        max_age=node.settings.cache_max_age,
        headers={"Access-Control-Allow-Origin": "*"},
    )


_LISTINGS = frozenset(("dir", "prefix"))
#: A listing names at most this many keys (a 100k x 100k slide's level 0 has ~170k chunks
#: of 240 px); beyond it the answer is a 400 asking for a narrower prefix.
MAX_LISTED_KEYS = 1_000_000


async def listing(request: Request) -> Response:
    blob_id = blob_id_param(request)
    require(request, Operation.READ, blob_id)
    mode = request.query_params.get("list", "")
    prefix = request.query_params.get("prefix", "")
    if mode not in _LISTINGS:
        raise InvalidRequest("list= must be 'dir' (names below prefix) or 'prefix' (keys)")
    node: NodeState = request.app.state.node
    entry = await open_entry(node, blob_id)
    store = entry.pyramid.store
    names = store.list_dir(prefix) if mode == "dir" else store.list_prefix(prefix)
    keys: list[str] = []
    async for name in names:
        keys.append(name)
        if len(keys) > MAX_LISTED_KEYS:
            raise InvalidRequest(f"more than {MAX_LISTED_KEYS} keys: list a narrower prefix")
    return immutable(
        request,
        _encoder.encode({"keys": keys}),
        "application/json",
        f"{blob_id}-zarr-list-{mode}-{stable_digest(prefix)}-{RENDER_VERSION}",
        max_age=node.settings.cache_max_age,
        headers={"Access-Control-Allow-Origin": "*"},
    )


def routes() -> list[Route]:
    return [
        Route("/zarr/{blob_id}", listing, methods=["GET"]),
        Route("/zarr/{blob_id}/{key:path}", key, methods=["GET", "HEAD"]),
    ]

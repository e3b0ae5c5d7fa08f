"""DeepZoom for OpenSeadragon: ``/slides/{id}.dzi`` and ``/slides/{id}_files/{level}/{col}_{row}.{fmt}``.

Tiles of native levels are stored JPEG bytes, and the node prerenders the others in the
background (``node/renditions.py``): when the slide is already open such a tile is
served straight from the event loop (one ``pread``), skipping the thread hop that
rendered tiles need.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from slidestore import imaging
from slidestore.tokens import Operation
from slidestore_server.auth import require
from slidestore_server.node.fastpath import STORED_MISS
from slidestore_server.node.responses import RENDER_VERSION, etag_matches, immutable
from slidestore_server.node.routes.common import blob_id_param, open_entry, read_entry
from slidestore_server.node.state import NodeState
from slidestore_server.node.tiles import stored_tile, tile_etag


async def dzi(request: Request) -> Response:
    blob_id = blob_id_param(request)
    require(request, Operation.READ, blob_id)
    node: NodeState = request.app.state.node
    entry = await open_entry(node, blob_id)
    return immutable(
        request,
        entry.deepzoom.dzi().encode(),
        "application/xml",
        f"{blob_id}-dzi-{entry.deepzoom.tile_size}-{entry.deepzoom.overlap}-{RENDER_VERSION}",
        max_age=node.settings.cache_max_age,
        headers={"Access-Control-Allow-Origin": "*"},
    )


async def tile(request: Request) -> Response:
    blob_id = blob_id_param(request)
    require(request, Operation.READ, blob_id)
    params = request.path_params
    level, col, row = int(params["level"]), int(params["col"]), int(params["row"])
    fmt = imaging.normalize_format(params["fmt"])
    node: NodeState = request.app.state.node
    etag_key = tile_etag(blob_id, level, col, row, fmt)
    if etag_matches(request, f'"{etag_key}"'):
        return immutable(request, b"", "", etag_key, max_age=node.settings.cache_max_age)
    entry = await read_entry(node, blob_id)
    # Asked once per request: by the fast path (it saw the slide open), else here.
    result = (
        None if STORED_MISS in request.scope else stored_tile(node, entry, level, col, row, fmt)
    )
    if result is None:
        result = await run_in_threadpool(
            entry.deepzoom.tile_with_info, level, col, row, fmt, stored=False
        )
    return immutable(
        request,
        result.data,
        result.media_type,
        etag_key,
        max_age=node.settings.cache_max_age,
        headers={"Access-Control-Allow-Origin": "*"},
    )


def routes() -> list[Route]:
    return [
        Route("/slides/{blob_id}.dzi", dzi, methods=["GET"]),
        Route(
            "/slides/{blob_id}_files/{level:int}/{col:int}_{row:int}.{fmt}",
            tile,
            methods=["GET"],
        ),
    ]

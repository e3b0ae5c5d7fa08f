"""The pyramid's zarr v3 keys over HTTP, so ``zarr.open_group("http://node/zarr/<id>")`` works.

Keys that do not exist answer 404 (zarr reads that as "missing"); chunk bytes are the
decoded tile, uncompressed, exactly as the in-process store returns them.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from slidestore.errors import OutOfBounds
from slidestore.tokens import Operation
from slidestore_server.auth import require
from slidestore_server.node.responses import RENDER_VERSION, immutable
from slidestore_server.node.routes.common import blob_id_param, open_entry
from slidestore_server.node.state import NodeState
from slidestore_server.node.tiles import checked_zarr_key


async def key(request: Request) -> Response:
    blob_id = blob_id_param(request)
    require(request, Operation.READ, blob_id)
    name = str(request.path_params["key"])
    node: NodeState = request.app.state.node
    entry = await open_entry(node, blob_id)
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


def routes() -> list[Route]:
    return [Route("/zarr/{blob_id}/{key:path}", key, methods=["GET", "HEAD"])]

"""IIIF Image API 3.0: ``/iiif/3/{id}/info.json`` and ``/iiif/3/{id}/{region}/{size}/{rotation}/{quality}.{format}``.

Stock IIIF clients (OpenSeadragon, Mirador) build every tile URL from the ``id`` in
info.json and drop the query string, so ``?token=`` reaches info.json only. The same image
service is therefore also served under ``/iiif/3/t/{token}/{id}/…``: the capability is part
of the service's URL and ``id`` carries it, so the client's tile URLs carry it too. The
token is verified exactly like a bearer one (signature, expiry, ``read`` on this blob);
the error log writes these paths with the token cut out (``errors.loggable_path``).
"""

from __future__ import annotations

import hashlib

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from slidestore.protocols import iiif
from slidestore.tokens import Operation, Verifier
from slidestore_server.auth import require
from slidestore_server.node.responses import RENDER_VERSION, immutable
from slidestore_server.node.routes.common import blob_id_param, open_entry, read_entry
from slidestore_server.node.slides import SlideEntry
from slidestore_server.node.state import NodeState
from slidestore_server.node.tiles import checked_iiif_tile

_encoder = msgspec.json.Encoder()
_CORS = {"Access-Control-Allow-Origin": "*"}


def _base_id(request: Request, blob_id: str) -> str:
    token = request.path_params.get("token")
    service = f"/iiif/3/t/{token}/{blob_id}" if token else f"/iiif/3/{blob_id}"
    return str(request.base_url).rstrip("/") + service


def _authorize(request: Request, blob_id: str) -> None:
    """``read`` on ``blob_id``, from the token in the path when the URL carries one."""
    token = request.path_params.get("token")
    if token is not None:
        verifier: Verifier = request.app.state.verifier
        request.scope["slidestore.capability"] = verifier.verify(str(token))
    require(request, Operation.READ, blob_id)


def stable_digest(text: str) -> str:
    """A short digest that is the same in every process (``hash()`` of a str is salted
    per process, so ETags built from it changed on restarts and between nodes)."""
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


async def base(request: Request) -> Response:
    """The spec asks servers to redirect the bare image URI to its info.json (303)."""
    blob_id = blob_id_param(request)
    return RedirectResponse(
        f"{_base_id(request, blob_id)}/info.json", status_code=303, headers=_CORS
    )


async def info(request: Request) -> Response:
    blob_id = blob_id_param(request)
    _authorize(request, blob_id)
    node: NodeState = request.app.state.node
    entry = await open_entry(node, blob_id)
    document = iiif.info(entry.pyramid, _base_id(request, blob_id))
    accept = request.headers.get("accept", "")
    media = iiif.INFO_MEDIA_TYPE if "ld+json" in accept else "application/json"
    return immutable(
        request,
        _encoder.encode(document),
        media,
        f"{blob_id}-iiif-info-{RENDER_VERSION}-{stable_digest(document['id'])}",
        max_age=node.settings.cache_max_age,
        headers={**_CORS, "Vary": "Accept"},
    )


async def image(request: Request) -> Response:
    blob_id = blob_id_param(request)
    _authorize(request, blob_id)
    p = request.path_params
    parsed = iiif.parse(p["region"], p["size"], p["rotation"], f"{p['quality']}.{p['format']}")
    node: NodeState = request.app.state.node
    entry = await read_entry(node, blob_id)
    level0 = entry.pyramid.levels[0]
    plan = iiif.resolve(parsed, level0.width, level0.height, iiif.DEFAULT_LIMITS)
    canonical = plan.canonical(level0.width, level0.height)
    rendered = await _render(node, entry, plan)
    return immutable(
        request,
        rendered.data,
        rendered.media_type,
        f"{blob_id}-iiif-{canonical.replace('/', '_')}-{RENDER_VERSION}",
        max_age=node.settings.cache_max_age,
        headers={**_CORS, "Link": f'<{_base_id(request, blob_id)}/{canonical}>;rel="canonical"'},
    )


async def _render(node: NodeState, entry: SlideEntry, plan: iiif.ImagePlan) -> iiif.RenderedImage:
    """A stored native tile as is (checked); anything else rendered within the node's
    render budget."""
    pyramid = entry.pyramid
    stored = await run_in_threadpool(checked_iiif_tile, node, entry, plan)
    if stored is not None:
        return stored
    budget = node.render_budget
    cost = iiif.render_bytes(pyramid, plan)
    if not budget.fits(cost):
        raise iiif.IIIFSizeTooLarge(
            f"{plan.width}x{plan.height} would take about {cost >> 20} MiB to render, more "
            f"than this node's render budget of {budget.total_bytes >> 20} MiB"
        )
    async with budget.admit(cost):
        return await run_in_threadpool(iiif.render_plan, pyramid, plan, stored=False)


def routes() -> list[Route]:
    image_path = "/{region}/{size}/{rotation}/{quality}.{format}"
    return [
        # The capability-in-path service first: "t" is never a blob id.
        Route("/iiif/3/t/{token}/{blob_id}", base, methods=["GET"]),
        Route("/iiif/3/t/{token}/{blob_id}/info.json", info, methods=["GET"]),
        Route("/iiif/3/t/{token}/{blob_id}" + image_path, image, methods=["GET"]),
        Route("/iiif/3/{blob_id}", base, methods=["GET"]),
        Route("/iiif/3/{blob_id}/info.json", info, methods=["GET"]),
        Route("/iiif/3/{blob_id}" + image_path, image, methods=["GET"]),
    ]

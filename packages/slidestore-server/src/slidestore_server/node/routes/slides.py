"""Slide facts and pictures: normalized metadata, thumbnail, label, macro."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from slidestore import Slide, imaging
from slidestore.errors import InvalidRequest
from slidestore.imaging import RGBArray
from slidestore.metadata.redact import redacted
from slidestore.tokens import Operation
from slidestore_server.auth import require
from slidestore_server.node.responses import RENDER_VERSION, immutable
from slidestore_server.node.routes.common import blob_id_param, open_entry
from slidestore_server.node.state import NodeState

_encoder = msgspec.json.Encoder()
_MAX_THUMBNAIL = 2048


class SlideInfo(msgspec.Struct, kw_only=True):
    blob_id: str
    metadata: msgspec.Raw
    pyramid_levels: list[dict[str, int | float | None]]


async def info(request: Request) -> Response:
    blob_id = blob_id_param(request)
    cap = require(request, Operation.READ, blob_id)
    # Raw vendor properties can name the patient, the user and the file: only those who may
    # see the label (or have the whole file anyway) get them unredacted.
    full = cap.allows(Operation.LABELS, blob_id) or cap.allows(Operation.DOWNLOAD, blob_id)
    node: NodeState = request.app.state.node
    entry = await open_entry(node, blob_id)
    metadata = entry.slide.metadata
    levels = [
        {
            "index": lv.index,
            "width": lv.width,
            "height": lv.height,
            "downsample": lv.downsample,
            "native_level": lv.native_level,
        }
        for lv in entry.pyramid.levels
    ]
    body = _encoder.encode(
        SlideInfo(
            blob_id=blob_id,
            metadata=msgspec.Raw(_encoder.encode(metadata if full else redacted(metadata))),
            pyramid_levels=levels,
        )
    )
    return immutable(
        request,
        body,
        "application/json",
        f"{blob_id}-info{'-full' if full else ''}-{RENDER_VERSION}",
        max_age=node.settings.cache_max_age,
        # The full variant must not sit in a shared cache where a viewer's request finds it.
        shared=not full,
    )


def _format(request: Request) -> imaging.ImageFormat:
    return imaging.normalize_format(request.query_params.get("format", "jpeg"))


async def _picture(
    request: Request,
    blob_id: str,
    name: str,
    render: Callable[[Slide], RGBArray],
    quality: int,
    *,
    shared: bool = True,
) -> Response:
    """An image of the whole slide, rendered off the event loop, cached forever."""
    fmt = _format(request)
    node: NodeState = request.app.state.node
    entry = await open_entry(node, blob_id)
    body = await run_in_threadpool(lambda: imaging.encode(render(entry.slide), fmt, quality))
    return immutable(
        request,
        body,
        imaging.MEDIA_TYPES[fmt],
        f"{blob_id}-{name}-{fmt}-{RENDER_VERSION}",
        max_age=node.settings.cache_max_age,
        shared=shared,
    )


async def thumbnail(request: Request) -> Response:
    blob_id = blob_id_param(request)
    require(request, Operation.READ, blob_id)
    raw_size = request.query_params.get("size", "512")
    if not raw_size.isdigit() or not 1 <= int(raw_size) <= _MAX_THUMBNAIL:
        raise InvalidRequest(
            f"size must be an integer from 1 to {_MAX_THUMBNAIL}, got {raw_size!r}"
        )
    size = int(raw_size)
    return await _picture(request, blob_id, f"thumbnail-{size}", lambda s: s.thumbnail(size), 85)


async def associated(request: Request) -> Response:
    """Label and macro often show patient identifiers: they need the ``labels`` operation."""
    blob_id = blob_id_param(request)
    name = str(request.path_params["name"])
    require(request, Operation.LABELS, blob_id)
    return await _picture(
        request, blob_id, name, lambda s: s.associated_image(name), 90, shared=False
    )


async def renditions(request: Request) -> Response:
    """Whether the slide's Deep Zoom tiles are prerendered yet (``state``: pending,
    rendering, complete, unsupported or disabled) and what it took."""
    blob_id = blob_id_param(request)
    require(request, Operation.READ, blob_id)
    node: NodeState = request.app.state.node
    entry = await open_entry(node, blob_id)
    body = {"deepzoom": node.renditions.status(blob_id, entry.deepzoom.rendition_key)}
    return Response(
        _encoder.encode(body),
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def routes() -> list[Route]:
    return [
        Route("/slides/{blob_id}/info", info, methods=["GET"]),
        Route("/slides/{blob_id}/renditions", renditions, methods=["GET"]),
        Route("/slides/{blob_id}/thumbnail", thumbnail, methods=["GET"]),
        Route("/slides/{blob_id}/{name:str}", associated, methods=["GET"]),
    ]

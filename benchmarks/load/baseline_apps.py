"""The two reference servers the node is measured against, in the same run.

- ``deepzoom_app``: what labs run today — a Starlette app around openslide-python's
  ``DeepZoomGenerator`` with the settings of openslide-python's example server
  (tile 254, overlap 1, JPEG quality 75), rendering every tile on request.
- ``ceiling_app``: a fixed 12 KB body, the most this machine's HTTP stack can serve.

Both are ASGI factories for uvicorn (``--factory``) and read the slide path from
``SLIDESTORE_BENCH_SLIDE``.
"""

from __future__ import annotations

import io
import os

import openslide
from openslide.deepzoom import DeepZoomGenerator
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

TILE_SIZE = 254
OVERLAP = 1
QUALITY = 75


def deepzoom_app() -> Starlette:
    slide = openslide.OpenSlide(os.environ["SLIDESTORE_BENCH_SLIDE"])
    generator = DeepZoomGenerator(slide, tile_size=TILE_SIZE, overlap=OVERLAP, limit_bounds=False)

    def render(level: int, col: int, row: int) -> bytes:
        tile = generator.get_tile(level, (col, row))
        out = io.BytesIO()
        tile.save(out, "JPEG", quality=QUALITY)
        return out.getvalue()

    async def tile(request: Request) -> Response:
        p = request.path_params
        body = await run_in_threadpool(render, p["level"], p["col"], p["row"])
        return Response(body, media_type="image/jpeg")

    async def dzi(request: Request) -> Response:
        return Response(generator.get_dzi("jpeg"), media_type="application/xml")

    return Starlette(
        routes=[
            Route("/slide.dzi", dzi),
            Route("/slide_files/{level:int}/{col:int}_{row:int}.jpeg", tile),
        ]
    )


_BODY = os.urandom(12 * 1024)


def ceiling_app() -> Starlette:
    async def fixed(request: Request) -> Response:
        return Response(_BODY, media_type="image/jpeg")

    return Starlette(routes=[Route("/{path:path}", fixed)])

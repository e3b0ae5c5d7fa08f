"""The folder server's ASGI app: the node's read routes over a :class:`FolderIndex`."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from slidestore import tokens
from slidestore.blobs.space import SpaceGuard
from slidestore.errors import Forbidden
from slidestore.tokens import ALL_BLOBS, Capability, Operation
from slidestore_server.auth import bearer, capability
from slidestore_server.errors import EXCEPTION_HANDLERS
from slidestore_server.folder import pages
from slidestore_server.folder.index import FolderIndex
from slidestore_server.folder.settings import FolderSettings
from slidestore_server.node.fastpath import TileFastPath
from slidestore_server.node.render_budget import RenderBudget
from slidestore_server.node.renditions import Prerenderer
from slidestore_server.node.routes import deepzoom, iiif, slides, zarr
from slidestore_server.node.routes.common import blob_id_param
from slidestore_server.node.slides import SlideCache

#: What a request without a token may do on loopback: read every slide, nothing more.
ANONYMOUS_TTL = 100 * 365 * 86400
RENDER_RESERVE_BYTES = 1 << 30
"""Free space the render cache's disk keeps: prerendering never fills a user's disk."""


class NoAccessLog:
    """A folder has no archive tier: what was read is not recorded."""

    def touch(self, blob_id: str) -> None:
        pass


@dataclass
class FolderState:
    """The part of a node's state its read routes use (``settings``, ``slides``,
    ``render_budget``, ``access``), plus the index."""

    settings: FolderSettings
    index: FolderIndex
    slides: SlideCache
    render_budget: RenderBudget
    access: NoAccessLog = field(default_factory=NoAccessLog)

    @property
    def blobs(self) -> FolderIndex:
        """The node's read path checks stored bytes through ``blobs`` (here: unchecked)."""
        return self.index


def default_viewer_dir() -> Path:
    """The portal's vendored OpenSeadragon in this checkout."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = (
            parent / "apps/labportal/frontend/node_modules/openseadragon/build/openseadragon"
        )
        if candidate.is_dir():
            return candidate
    return Path("openseadragon-not-found")


class AnonymousRead:
    """Loopback without tokens: a request that carries none reads as ``anonymous``."""

    def __init__(self, app: object, anonymous: Capability) -> None:
        self.app = app
        self.anonymous = anonymous

    async def __call__(self, scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        if scope["type"] == "http" and bearer(Request(scope)) is None and not _path_token(scope):
            scope["slidestore.capability"] = self.anonymous
        await self.app(scope, receive, send)  # type: ignore[operator]


def _path_token(scope: dict) -> bool:  # type: ignore[type-arg]
    return str(scope.get("path", "")).startswith("/iiif/3/t/")


def create_app(settings: FolderSettings) -> Starlette:
    # Prerendered levels go to the cache directory: the prerenderer checks their estimated
    # size fits there (leaving RENDER_RESERVE_BYTES free) before it starts one.
    renditions_dir = settings.renditions_dir()
    renditions_dir.mkdir(parents=True, exist_ok=True)
    index = FolderIndex(
        settings.serve_root,
        space=SpaceGuard(renditions_dir, RENDER_RESERVE_BYTES),
        rescan_seconds=settings.rescan_seconds,
    )
    # The node's prerenderer, over the folder (it needs ``ids()`` and ``path(id)``).
    renditions = Prerenderer(
        index,
        renditions_dir,
        threads=settings.prerender_threads,
        enabled=settings.prerender,
    )
    state = FolderState(
        settings=settings,
        index=index,
        slides=SlideCache(
            index,  # type: ignore[arg-type]  (only ``path(id)`` is used)
            max_open=settings.open_slides,
            cache_bytes=settings.tile_cache_bytes,
            renditions=renditions if settings.prerender else None,
        ),
        render_budget=RenderBudget(
            settings.iiif_render_budget_bytes, settings.iiif_render_wait_seconds
        ),
    )
    index.on_removed = lambda ids: [state.slides.evict(sid) for sid in ids]  # type: ignore[func-returns-value]
    viewer_dir = Path(settings.viewer_dir) if settings.viewer_dir else default_viewer_dir()
    anonymous = (
        None
        if settings.tokens_required
        else Capability(ops=frozenset({Operation.READ}), exp=int(time.time()) + ANONYMOUS_TTL)
    )

    async def home(request: Request) -> Response:
        cap = capability(request)
        if not cap.allows(Operation.READ) or cap.blob != ALL_BLOBS:
            raise Forbidden("the index lists every slide: it needs a read token for all slides")
        listed = await run_in_threadpool(index.slides)
        token = request.query_params.get("token")
        query = f"?token={token}" if token else ""
        return HTMLResponse(pages.index_page(listed, settings.serve_root.name, query))

    async def view(request: Request) -> Response:
        slide_id = blob_id_param(request)
        capability(request).require(Operation.READ, slide_id)
        slide = await run_in_threadpool(index.get, slide_id)
        return HTMLResponse(
            pages.viewer_page(slide, (viewer_dir / "openseadragon.min.js").is_file())
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        renditions.start()
        try:
            yield
        finally:
            renditions.stop()
            state.slides.close()

    routes: list[BaseRoute] = [
        *deepzoom.routes(),
        Route("/", home, methods=["GET"]),
        Route("/view/{blob_id}", view, methods=["GET"]),
        *[r for r in slides.routes() if not str(getattr(r, "path", "")).endswith("/renditions")],
        *iiif.routes(),
        *zarr.routes(),
    ]
    if viewer_dir.is_dir():
        routes.append(Mount("/viewer/openseadragon", StaticFiles(directory=viewer_dir)))
    verifier = tokens.Verifier(settings.secret)
    middleware = [Middleware(TileFastPath, node=state, verifier=verifier, anonymous=anonymous)]
    if anonymous is not None:
        middleware.append(Middleware(AnonymousRead, anonymous=anonymous))
    app = Starlette(
        routes=routes,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=middleware,
        lifespan=lifespan,
    )
    app.state.node = state
    app.state.secret = settings.secret
    app.state.verifier = verifier
    return app

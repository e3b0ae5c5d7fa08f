"""The storage node's ASGI app: ``create_app(settings)``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from slidestore.blobs import BlobStore
from slidestore.uploads import UploadManager
from slidestore_server.errors import EXCEPTION_HANDLERS
from slidestore_server.node.routes import health, uploads
from slidestore_server.node.slides import SlideCache
from slidestore_server.node.state import NodeState
from slidestore_server.settings import NodeSettings


def build_state(settings: NodeSettings) -> NodeState:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    blobs = BlobStore(settings.data_dir / "blobs", reserve_bytes=settings.reserve_bytes)
    return NodeState(
        settings=settings,
        blobs=blobs,
        uploads=UploadManager(
            settings.data_dir / "uploads",
            blobs,
            expiry_seconds=settings.upload_expiry_seconds,
            max_size=settings.max_upload_bytes,
        ),
        slides=SlideCache(blobs, max_open=settings.open_slides, cache_bytes=settings.tile_cache_bytes),
    )


def create_app(settings: NodeSettings) -> Starlette:
    state = build_state(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            state.slides.close()

    routes: list[BaseRoute] = [*health.routes(), *uploads.routes()]
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)  # type: ignore[arg-type]
    app.state.node = state
    app.state.secret = settings.secret
    return app

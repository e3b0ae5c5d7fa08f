"""The storage node's ASGI app: ``create_app(settings)``.

The lifespan owns the resources; handlers reach them through ``app.state.node``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from slidestore.blobs import BlobStore
from slidestore.tokens import Operation
from slidestore.uploads import UploadManager
from slidestore_server.auth import require
from slidestore_server.errors import EXCEPTION_HANDLERS
from slidestore_server.metrics import (
    CallbackCollector,
    HttpMetrics,
    MetricsMiddleware,
    metrics_endpoint,
)
from slidestore_server.node import openapi
from slidestore_server.node.routes import blobs, deepzoom, health, iiif, slides, uploads, zarr
from slidestore_server.node.slides import SlideCache
from slidestore_server.node.state import NodeState
from slidestore_server.settings import NodeSettings


def build_state(settings: NodeSettings) -> NodeState:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    blob_store = BlobStore(settings.data_dir / "blobs", reserve_bytes=settings.reserve_bytes)
    return NodeState(
        settings=settings,
        blobs=blob_store,
        uploads=UploadManager(
            settings.data_dir / "uploads",
            blob_store,
            expiry_seconds=settings.upload_expiry_seconds,
            max_size=settings.max_upload_bytes,
        ),
        slides=SlideCache(
            blob_store, max_open=settings.open_slides, cache_bytes=settings.tile_cache_bytes
        ),
    )


def _gauges(state: NodeState) -> Iterable[tuple[str, str, float]]:
    stats = state.blobs.stats()
    hits, misses = state.slides.cache_counts()
    yield "slidestore_node_blobs", "blobs stored", float(stats.count)
    yield "slidestore_node_bytes_stored", "bytes stored in blobs", float(stats.bytes_stored)
    yield "slidestore_node_free_bytes", "free bytes on the data filesystem", float(stats.free_bytes)
    yield (
        "slidestore_node_uploads_in_flight",
        "upload sessions not yet complete",
        float(state.uploads.in_flight()),
    )
    yield (
        "slidestore_node_bytes_received",
        "upload bytes received by this process",
        float(state.uploads.bytes_received),
    )
    yield "slidestore_node_tile_cache_hits", "decoded tile cache hits", float(hits)
    yield "slidestore_node_tile_cache_misses", "decoded tile cache misses", float(misses)
    total = hits + misses
    yield (
        "slidestore_node_tile_cache_hit_ratio",
        "decoded tile cache hit ratio",
        hits / total if total else 0.0,
    )


def create_app(settings: NodeSettings) -> Starlette:
    state = build_state(settings)
    registry = CollectorRegistry()
    metrics = HttpMetrics(registry, "slidestore_node")
    registry.register(CallbackCollector(lambda: _gauges(state)))
    serve_metrics = metrics_endpoint(registry)
    schema = openapi.document()

    async def metrics_route(request: Request) -> Response:
        require(request, Operation.ADMIN)
        return serve_metrics(request)

    async def openapi_route(request: Request) -> Response:
        return JSONResponse(schema)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            state.slides.close()

    routes: list[BaseRoute] = [
        *health.routes(),
        Route("/metrics", metrics_route, methods=["GET"]),
        Route("/openapi.json", openapi_route, methods=["GET"]),
        *blobs.routes(),
        *uploads.routes(),
        *slides.routes(),
        *deepzoom.routes(),
        *iiif.routes(),
        *zarr.routes(),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=[Middleware(MetricsMiddleware, metrics=metrics)],
        lifespan=lifespan,
    )
    app.state.node = state
    app.state.secret = settings.secret
    return app

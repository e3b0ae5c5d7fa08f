"""The storage node's ASGI app: ``create_app(settings)``.

The lifespan owns the resources; handlers reach them through ``app.state.node``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from slidestore import tokens
from slidestore.blobs import BlobStore
from slidestore.blobs.durable import make_private_dirs
from slidestore.tokens import Operation
from slidestore.uploads import UploadManager
from slidestore_server.auth import require
from slidestore_server.errors import EXCEPTION_HANDLERS
from slidestore_server.memory import freeze_startup_heap
from slidestore_server.metrics import (
    CallbackCollector,
    HttpMetrics,
    MetricsMiddleware,
    metrics_endpoint,
)
from slidestore_server.node import openapi
from slidestore_server.node.access import AccessLog
from slidestore_server.node.capacity import Capacity
from slidestore_server.node.changes import ChangeSignal
from slidestore_server.node.cluster import BackgroundDuties
from slidestore_server.node.fastpath import TileFastPath
from slidestore_server.node.foreground import Foreground, MarkForeground
from slidestore_server.node.identity import load_or_create_node_id
from slidestore_server.node.render_budget import RenderBudget
from slidestore_server.node.renditions import Prerenderer
from slidestore_server.node.routes import (
    admin,
    blobs,
    deepzoom,
    health,
    iiif,
    replicas,
    slides,
    uploads,
    zarr,
)
from slidestore_server.node.scrubber import Scrubber
from slidestore_server.node.slides import SlideCache
from slidestore_server.node.state import NodeState
from slidestore_server.settings import NodeSettings

#: Response headers a browser page may read: what tus-js-client and a viewer need.
CORS_EXPOSED = [
    "Location",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Expires",
    "Upload-Metadata",
    "Upload-Concat",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "Slidestore-Blob-Id",
    "ETag",
    "Content-Range",
]


log = logging.getLogger("slidestore.node")


def build_state(settings: NodeSettings) -> NodeState:
    make_private_dirs(settings.data_dir)  # slides show patients: 0700
    capacity = Capacity(settings.capacity_bytes)
    blob_store = BlobStore(
        settings.data_dir / "blobs", reserve_bytes=settings.reserve_bytes, free=capacity.free
    )
    capacity.attach(blob_store)
    changes = ChangeSignal(settings.data_dir, enabled=bool(settings.coordinator_url))
    renditions = Prerenderer(
        blob_store,
        settings.data_dir / "renditions",
        threads=settings.prerender_threads,
        enabled=settings.prerender,
        space_retry_seconds=settings.prerender_space_retry_seconds,
    )
    slide_cache = SlideCache(
        blob_store,
        max_open=settings.open_slides,
        cache_bytes=settings.tile_cache_bytes,
        renditions=renditions if settings.prerender else None,
        recheck_seconds=settings.recheck_seconds,
    )

    def quarantined(blob_ids: list[str]) -> None:
        for blob_id in blob_ids:
            slide_cache.evict(blob_id)
        changes.notify()

    return NodeState(
        settings=settings,
        node_id=load_or_create_node_id(settings.data_dir),
        blobs=blob_store,
        capacity=capacity,
        changes=changes,
        scrubber=Scrubber(
            blob_store,
            bytes_per_second=settings.scrub_bytes_per_second,
            interval_seconds=settings.scrub_interval_seconds,
            on_quarantine=quarantined,
        ),
        uploads=UploadManager(
            settings.data_dir / "uploads",
            blob_store,
            expiry_seconds=settings.upload_expiry_seconds,
            idle_expiry_seconds=settings.upload_idle_expiry_seconds,
            max_size=settings.max_upload_bytes,
            max_sessions_per_owner=settings.upload_max_sessions_per_token,
        ),
        slides=slide_cache,
        renditions=renditions,
        foreground=Foreground(settings.data_dir),
        access=AccessLog(settings.data_dir),
        render_budget=RenderBudget(
            settings.iiif_render_budget_bytes, settings.iiif_render_wait_seconds
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
    tiles = state.slides.deepzoom_counts()
    for source, help_text in (
        ("passthrough", "Deep Zoom tiles answered with stored native JPEG bytes"),
        ("prerendered", "Deep Zoom tiles read from a prerendered rendition"),
        ("rendered", "Deep Zoom tiles rendered on demand"),
        ("cache_hits", "Deep Zoom tiles answered from the encoded-tile cache"),
    ):
        yield f"slidestore_node_deepzoom_{source}", help_text + " (open slides)", tiles[source]
    budget = state.render_budget
    for name, help_text, value in (
        ("bytes_in_use", "estimated bytes of IIIF renders in progress", budget.in_use),
        ("bytes_peak", "the most IIIF render bytes in progress at once", budget.peak),
        ("budget_bytes", "the IIIF render budget", budget.total_bytes),
        ("admitted", "IIIF renders admitted to the budget", budget.admitted),
        ("refused_busy", "IIIF renders refused with 503 for want of budget", budget.refused),
    ):
        yield f"slidestore_node_iiif_render_{name}", help_text, float(value)
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
        loop = asyncio.get_running_loop()

        def corrupt_copy(blob_id: str) -> None:
            # From a read on any thread: the copy is already moved aside; drop its open
            # slide and heartbeat now, on the loop (the agent reports the quarantine).
            log.error("quarantined a corrupt copy", extra={"blob_id": blob_id})
            loop.call_soon_threadsafe(state.blobs_gone, [blob_id])

        state.blobs.on_quarantine = corrupt_copy
        state.renditions.start()
        background = BackgroundDuties(state)
        background.start()
        freeze_startup_heap()
        try:
            yield
        finally:
            await background.stop()
            state.renditions.stop()
            state.slides.close()

    # Tile routes first: Starlette tries routes in order, and tiles are most requests.
    routes: list[BaseRoute] = [
        *deepzoom.routes(),
        *health.routes(),
        Route("/metrics", metrics_route, methods=["GET"]),
        Route("/openapi.json", openapi_route, methods=["GET"]),
        *blobs.routes(),
        *replicas.routes(),
        *admin.routes(),
        *uploads.routes(),
        *slides.routes(),
        *iiif.routes(),
        *zarr.routes(),
    ]
    verifier = tokens.Verifier(settings.secret)
    app = Starlette(
        routes=routes,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            Middleware(MarkForeground, foreground=state.foreground),
            Middleware(MetricsMiddleware, metrics=metrics),
            Middleware(TileFastPath, node=state, verifier=verifier),
            Middleware(
                CORSMiddleware,
                allow_origins=[o.strip() for o in settings.cors_origins.split(",") if o.strip()],
                allow_methods=["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"],
                allow_headers=["*"],
                expose_headers=CORS_EXPOSED,
                max_age=3600,
            ),
        ],
        lifespan=lifespan,
    )
    app.state.node = state
    app.state.secret = settings.secret
    app.state.verifier = verifier
    return app

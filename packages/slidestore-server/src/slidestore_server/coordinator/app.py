"""The coordinator's ASGI app: ``create_app(settings)``.

The lifespan owns the engine, the HTTP client to the nodes and the loop task; handlers
reach them through ``app.state.coordinator`` (and ``app.state.loop`` for deletes).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from slidestore.tokens import Operation
from slidestore_server.auth import require
from slidestore_server.coordinator import openapi, routes_blobs, routes_nodes, worklist
from slidestore_server.coordinator.db import create_engine, create_schema
from slidestore_server.coordinator.http import coordinator, database_error_handler, json
from slidestore_server.coordinator.identity import DatabaseIdentity
from slidestore_server.coordinator.leader import Leadership
from slidestore_server.coordinator.loop import Loop
from slidestore_server.coordinator.nodes import NodeClient
from slidestore_server.coordinator.settings import CoordinatorSettings
from slidestore_server.coordinator.state import Coordinator
from slidestore_server.coordinator.waits import WaitSlots
from slidestore_server.errors import EXCEPTION_HANDLERS
from slidestore_server.memory import freeze_startup_heap
from slidestore_server.metrics import MetricsMiddleware, metrics_endpoint


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    coord = coordinator(request)
    if coord.identity.lost is not None:
        return JSONResponse({"status": "not_ready", "problems": [coord.identity.lost]}, 503)
    try:
        async with coord.engine.connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), timeout=2.0)
    except Exception as exc:
        return JSONResponse(
            {"status": "not_ready", "problems": [f"database: {type(exc).__name__}"]}, 503
        )
    return JSONResponse({"status": "ready", "problems": []})


async def status(request: Request) -> Response:
    require(request, Operation.ADMIN)
    coord = coordinator(request)
    counts: dict[str, object] = {}
    if coord.identity.lost is None:  # else the counts would come from the wrong database
        async with coord.engine.connect() as conn:
            counts = await worklist.counts(conn, coord.now(), coord.timeouts)
    held = coord.repair_held_until - coord.now() if coord.leadership.leading else 0.0
    return json(
        {
            "leader": coord.leadership.leading,
            "coordinator": coord.leadership.holder,
            "term": coord.leadership.term,
            "terms": coord.leadership.terms,
            "database_lost": coord.identity.lost,
            "repair_held_seconds": round(max(0.0, held), 3),
            **counts,
        }
    )


def create_app(settings: CoordinatorSettings) -> Starlette:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database)
    client = httpx.AsyncClient(timeout=30.0)
    coord = Coordinator(
        settings=settings,
        engine=engine,
        leadership=Leadership(engine, lease_seconds=settings.lease_seconds),
        nodes=NodeClient(settings.secret, client),
        identity=DatabaseIdentity(engine, settings.database),
    )
    loop = Loop(coord)
    serve_metrics = metrics_endpoint(coord.metrics.registry)
    schema = openapi.document()

    async def metrics_route(request: Request) -> Response:
        require(request, Operation.ADMIN)
        return serve_metrics(request)

    async def openapi_route(request: Request) -> Response:
        return JSONResponse(schema)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await create_schema(engine)
        await coord.identity.capture()
        task = asyncio.create_task(loop.run(), name="coordinator-loop")
        freeze_startup_heap()
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await loop.close()
            await client.aclose()
            await engine.dispose()

    routes: list[BaseRoute] = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_route, methods=["GET"]),
        Route("/openapi.json", openapi_route, methods=["GET"]),
        Route("/v1/status", status, methods=["GET"]),
        *routes_nodes.routes(),
        *routes_blobs.routes(),
    ]
    app = Starlette(
        routes=routes,
        # The coordinator alone has a database: its outages answer 503, not 500.
        exception_handlers={**EXCEPTION_HANDLERS, DBAPIError: database_error_handler},
        middleware=[Middleware(MetricsMiddleware, metrics=coord.metrics.http)],
        lifespan=lifespan,
    )
    app.state.coordinator = coord
    app.state.loop = loop
    app.state.wait_slots = WaitSlots()
    app.state.secret = settings.secret
    return app

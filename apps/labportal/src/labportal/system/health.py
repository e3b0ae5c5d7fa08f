"""/healthz (the process answers), /readyz (the database, the coordinator and a storage
node, the Dask scheduler tasks run on and its workers), /metrics.

Liveness stays 200 whatever the dependencies do (a restart would not bring them back);
readiness is 503 with the reason while any is missing, a slide cluster that is not
configured included: without one every material call answers 503 too. The cluster is
checked through the SDK (``labportal.cluster``), like every other call to it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from labportal.cluster import Cluster
from labportal.errors import NotFound, Unauthorized
from labportal.settings import Settings

log = logging.getLogger("labportal.health")


class Health(msgspec.Struct):
    status: str


class DaskOut(msgspec.Struct):
    scheduler: str
    workers: int


class Readiness(msgspec.Struct):
    status: str
    """ready or unavailable"""
    checks: dict[str, str]
    dask: DaskOut | None = None
    """The scheduler tasks run on and its worker count (when this process runs tasks or
    a scheduler is configured)."""


async def check_database(engine: NamedDependency[AsyncEngine]) -> str:
    try:
        async with asyncio.timeout(5), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        log.warning("database not ready: %s", exc)
        return f"error: {type(exc).__name__}"
    return "ok"


def require_metrics_token(request: Request[Any, Any, Any], settings: Settings) -> None:
    """Traffic by route and status is for operators: their own token, not a user's."""
    if not settings.metrics_token:
        raise NotFound("metrics are off (set LABPORTAL_METRICS_TOKEN to serve them)")
    scheme, _, sent = request.headers.get("authorization", "").partition(" ")
    expected = settings.metrics_token.encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(), expected):
        raise Unauthorized(
            "send 'Authorization: Bearer <LABPORTAL_METRICS_TOKEN>'",
            code="invalid_token",
            headers={"WWW-Authenticate": "Bearer"},
        )


class HealthController(Controller):
    tags = ["operations"]

    @get("/healthz", summary="Liveness")
    async def healthz(self) -> Health:
        return Health(status="ok")

    @get("/readyz", summary="Readiness: 503 while a dependency is unavailable")
    async def readyz(
        self, db_engine: NamedDependency[AsyncEngine], state: State
    ) -> Response[Readiness]:
        checks = {"database": await check_database(db_engine)}
        cluster: Cluster = state.cluster
        health = await cluster.health()
        checks["coordinator"] = health.coordinator
        if health.nodes is not None:
            checks["nodes"] = health.nodes
        dask = None
        if state.engine is not None:
            checks["dask"], described = await state.engine.health()
            if described is not None:
                dask = DaskOut(scheduler=described["scheduler"], workers=described["workers"])
        ready = all(v == "ok" for v in checks.values())
        return Response(
            Readiness(status="ready" if ready else "unavailable", checks=checks, dask=dask),
            status_code=200 if ready else 503,
        )

    @get(
        "/metrics",
        summary="Prometheus metrics (Authorization: Bearer LABPORTAL_METRICS_TOKEN)",
        media_type="text/plain; version=0.0.4",
    )
    async def metrics(
        self, request: Request[Any, Any, Any], state: State, settings: NamedDependency[Settings]
    ) -> str:
        require_metrics_token(request, settings)
        return state.metrics.render()  # type: ignore[no-any-return]

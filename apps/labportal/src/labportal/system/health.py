"""/healthz (the process answers), /readyz (database; coordinator and storage nodes when
configured), /metrics."""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

import httpx
import msgspec
from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from labportal.errors import NotFound, Unauthorized
from labportal.settings import Settings
from slidestore import tokens
from slidestore.tokens import Operation

log = logging.getLogger("labportal.health")


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    status: str
    """ready or unavailable"""
    checks: dict[str, str]


async def check_database(engine: NamedDependency[AsyncEngine]) -> str:
    try:
        async with asyncio.timeout(5), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        log.warning("database not ready: %s", exc)
        return f"error: {type(exc).__name__}"
    return "ok"


async def check_coordinator(url: str) -> str:
    try:
        async with httpx.AsyncClient(timeout=3) as client:
            response = await client.get(url.rstrip("/") + "/healthz")
    except httpx.HTTPError as exc:
        return f"error: {type(exc).__name__}"
    return "ok" if response.status_code == 200 else f"error: HTTP {response.status_code}"


async def check_nodes(coordinator: str, secret: str) -> str:
    """At least one node the coordinator calls alive answers its ``/healthz``: slides can
    be read and uploaded."""
    # The node list (addresses, free space) is an operator's view: an admin token for one
    # minute, minted here and sent only to the coordinator.
    token = tokens.mint(secret, ops={Operation.ADMIN}, ttl=60, subject="labportal-readyz")
    try:
        async with httpx.AsyncClient(timeout=3) as client:
            answer = await client.get(
                coordinator.rstrip("/") + "/v1/nodes", headers={"Authorization": f"Bearer {token}"}
            )
            if answer.status_code != 200:
                return f"error: coordinator answered HTTP {answer.status_code}"
            urls = [n["url"] for n in answer.json() if n.get("state") == "alive"]
            if not urls:
                return "error: no live storage node"
            results = await asyncio.gather(
                *(client.get(url.rstrip("/") + "/healthz") for url in urls),
                return_exceptions=True,
            )
    except (httpx.HTTPError, ValueError) as exc:
        return f"error: {type(exc).__name__}"
    reachable = sum(isinstance(r, httpx.Response) and r.status_code == 200 for r in results)
    return "ok" if reachable else "error: no storage node reachable"


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
        self, db_engine: NamedDependency[AsyncEngine], settings: NamedDependency[Settings]
    ) -> Response[Readiness]:
        checks = {"database": await check_database(db_engine)}
        if settings.coordinator:
            checks["coordinator"] = await check_coordinator(settings.coordinator)
            if settings.cluster_secret and checks["coordinator"] == "ok":
                checks["nodes"] = await check_nodes(settings.coordinator, settings.cluster_secret)
        ready = all(v == "ok" for v in checks.values())
        return Response(
            Readiness(status="ready" if ready else "unavailable", checks=checks),
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

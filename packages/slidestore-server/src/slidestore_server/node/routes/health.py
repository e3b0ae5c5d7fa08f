"""Liveness and readiness."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from slidestore_server.node.state import NodeState


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    node: NodeState = request.app.state.node
    problems = node.blobs.readiness_problems()
    status = 200 if not problems else 503
    return JSONResponse(
        {"status": "ready" if not problems else "not_ready", "problems": problems}, status
    )


def routes() -> list[Route]:
    return [Route("/healthz", healthz), Route("/readyz", readyz)]

"""Liveness and readiness."""

from __future__ import annotations

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from slidestore_server.node.state import NodeState


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    node: NodeState = request.app.state.node
    problems = await run_in_threadpool(node.blobs.readiness_problems)
    coordinator = node.settings.coordinator_url
    if coordinator:
        try:
            async with httpx.AsyncClient(timeout=1.0) as client:
                answer = await client.get(coordinator.rstrip("/") + "/healthz")
            if answer.status_code != 200:
                problems.append(f"coordinator {coordinator} answered {answer.status_code}")
        except httpx.HTTPError as exc:
            problems.append(f"coordinator {coordinator} unreachable: {type(exc).__name__}")
    status = 200 if not problems else 503
    return JSONResponse(
        {"status": "ready" if not problems else "not_ready", "problems": problems}, status
    )


def routes() -> list[Route]:
    return [Route("/healthz", healthz), Route("/readyz", readyz)]

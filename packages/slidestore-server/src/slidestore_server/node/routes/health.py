"""Liveness and readiness."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from slidestore_server.node.agent_status import coordinator_problems
from slidestore_server.node.state import NodeState


async def healthz(request: Request) -> JSONResponse:
    node: NodeState = request.app.state.node
    return JSONResponse({"status": "ok", "node_id": node.node_id})


async def readyz(request: Request) -> JSONResponse:
    node: NodeState = request.app.state.node
    problems = await run_in_threadpool(node.blobs.readiness_problems)
    coordinator = node.settings.coordinator_url
    if coordinator:
        # What the cluster agent (maybe in another worker) last managed, not a probe of
        # our own: being registered and heartbeating is what makes the node usable.
        problems += coordinator_problems(node.settings.data_dir, coordinator)
    status = 200 if not problems else 503
    return JSONResponse(
        {"status": "ready" if not problems else "not_ready", "problems": problems}, status
    )


def routes() -> list[Route]:
    return [Route("/healthz", healthz), Route("/readyz", readyz)]

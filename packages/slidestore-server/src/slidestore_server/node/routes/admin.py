"""Operator endpoints: ``POST /admin/scrub`` runs a scrub pass now (unthrottled) and
answers the ids it quarantined, which the cluster agent then reports."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from slidestore.tokens import Operation
from slidestore_server.auth import require
from slidestore_server.node.state import NodeState


async def scrub_now(request: Request) -> JSONResponse:
    require(request, Operation.ADMIN)
    node: NodeState = request.app.state.node
    started = time.monotonic()
    quarantined = await node.scrubber.run_pass(throttled=False)
    return JSONResponse(
        {"quarantined": quarantined, "seconds": round(time.monotonic() - started, 3)}
    )


def routes() -> list[BaseRoute]:
    return [Route("/admin/scrub", scrub_now, methods=["POST"], name="admin_scrub")]

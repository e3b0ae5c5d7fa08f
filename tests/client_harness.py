"""Test kit for the client SDK tests: a stub coordinator over real HTTP.

The coordinator is not written yet; :class:`StubCoordinator` implements just the part of
``docs/cluster.md`` the client calls (placements, blob views, wait, nodes, delete) with
tokens checked like the real servers do, on a uvicorn server in a thread. Its state is
plain attributes the test sets, and it records what clients asked for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from slidestore import tokens
from slidestore.cluster import wire
from slidestore.cluster.model import NodeState
from slidestore.errors import SlidestoreError
from slidestore.tokens import Operation
from slidestore_server.errors import error_response, status_for
from slidestore_server.testing import free_port

SECRET = tokens.new_secret()
_encoder = msgspec.json.Encoder()


def client_token(*ops: Operation, blob: str = tokens.ALL_BLOBS) -> str:
    chosen = set(ops) or {Operation.READ, Operation.DOWNLOAD, Operation.WRITE, Operation.DELETE}
    return tokens.mint(SECRET, ops=chosen, blob=blob, ttl=600)


def replica(node_id: str, url: str, state: NodeState = NodeState.ALIVE) -> wire.ReplicaView:
    return wire.ReplicaView(node_id=node_id, url=url, state=state)


def json(value: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(value), status_code=status, media_type="application/json")


Endpoint = Callable[[Request], Awaitable[Response]]


def guarded(op: Operation, handler: Endpoint) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            header = request.headers.get("authorization", "")
            if not header.lower().startswith("bearer "):
                return error_response(401, "token_missing", "this endpoint needs a token")
            tokens.verify(SECRET, header.split(" ", 1)[1]).require(op)
            return await handler(request)
        except SlidestoreError as exc:
            return error_response(status_for(exc), exc.code, str(exc))

    return endpoint


class StubCoordinator:
    def __init__(self) -> None:
        self.port = free_port()
        self.blobs: dict[str, list[wire.ReplicaView]] = {}
        """Blob id → replicas the stub reports."""
        self.targets: list[wire.Target] = []
        """Placement candidates, in order; excluded ones are skipped."""
        self.existing: set[str] = set()
        """sha256 values the placement answers ``exists`` for."""
        self.nodes: list[wire.NodeView] = []
        self.wait_timeouts = 0
        """How many ``…/wait`` calls answer 408 before one answers the blob view."""
        self.fail_next = 0
        """How many requests (any route) answer 503 first."""
        self.placements: list[wire.PlacementRequest] = []
        self.waits: list[dict[str, str]] = []
        self.deleted: list[str] = []
        self.blob_reads = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def view(self, blob_id: str) -> wire.BlobView:
        replicas = tuple(self.blobs[blob_id])
        return wire.BlobView(
            blob_id=blob_id,
            size=1,
            target=2,
            replicas=replicas,
            status=wire.BlobStatus.OK if len(replicas) >= 2 else wire.BlobStatus.UNDER_REPLICATED,
            pinned=True,
            expires_at=None,
        )

    # -- routes ------------------------------------------------------------------------

    async def place(self, request: Request) -> Response:
        body = msgspec.json.decode(await request.body(), type=wire.PlacementRequest)
        self.placements.append(body)
        token = tokens.mint(SECRET, ops={Operation.WRITE, Operation.READ}, ttl=600)
        if body.sha256 in self.existing:
            return json(
                wire.Placement(
                    exists=True, primary=None, targets=(), upload_url=None, token=token, replicas=2
                )
            )
        usable = [t for t in self.targets if t.node_id not in body.exclude]
        if not usable:
            return error_response(507, "no_placement", "no node has room for the blob")
        return json(
            wire.Placement(
                exists=False,
                primary=usable[0],
                targets=tuple(usable[:2]),
                upload_url=usable[0].url + "/uploads",
                token=token,
                replicas=body.replicas or 2,
            )
        )

    async def blob(self, request: Request) -> Response:
        blob_id = request.path_params["blob_id"]
        self.blob_reads += 1
        if blob_id not in self.blobs:
            return error_response(404, "blob_not_found", f"no blob {blob_id} in the cluster")
        return json(self.view(blob_id))

    async def wait(self, request: Request) -> Response:
        blob_id = request.path_params["blob_id"]
        self.waits.append(dict(request.query_params))
        if self.wait_timeouts > 0:
            self.wait_timeouts -= 1
            return error_response(408, "wait_timeout", "not enough replicas yet")
        if blob_id not in self.blobs:
            return error_response(404, "blob_not_found", f"no blob {blob_id} in the cluster")
        return json(self.view(blob_id))

    async def delete(self, request: Request) -> Response:
        blob_id = request.path_params["blob_id"]
        if self.blobs.pop(blob_id, None) is None:
            return error_response(404, "blob_not_found", f"no blob {blob_id} in the cluster")
        self.deleted.append(blob_id)
        return Response(status_code=204)

    async def list_nodes(self, request: Request) -> Response:
        return json(self.nodes)

    def app(self) -> Starlette:
        async def flaky(request: Request) -> Response | None:
            if self.fail_next > 0:
                self.fail_next -= 1
                return error_response(503, "unavailable", "stub says try later")
            return None

        def route(path: str, op: Operation, handler: Endpoint, method: str) -> Route:
            inner = guarded(op, handler)

            async def endpoint(request: Request) -> Response:
                return (await flaky(request)) or await inner(request)

            return Route(path, endpoint, methods=[method])

        return Starlette(
            routes=[
                route("/v1/placements", Operation.WRITE, self.place, "POST"),
                route("/v1/blobs/{blob_id}/wait", Operation.READ, self.wait, "GET"),
                route("/v1/blobs/{blob_id}", Operation.READ, self.blob, "GET"),
                route("/v1/blobs/{blob_id}", Operation.DELETE, self.delete, "DELETE"),
                route("/v1/nodes", Operation.ADMIN, self.list_nodes, "GET"),
            ]
        )

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> StubCoordinator:
        config = uvicorn.Config(
            self.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("stub coordinator did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

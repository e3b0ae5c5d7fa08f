"""Test kit: a tiny real coordinator that records what nodes tell it.

It speaks the node-facing half of the cluster protocol (register, heartbeat, healthz)
exactly as ``docs/cluster.md`` says, over real HTTP on loopback, and keeps every message
it accepted, so node tests can assert on what a node reports without the real
coordinator. It can also misbehave on demand: forget a node (404 ``node_unknown``) or
fail heartbeats with 503 for a while.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Self

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from slidestore import tokens
from slidestore.cluster.model import NodeState
from slidestore.cluster.wire import API, Heartbeat, HeartbeatAck, Register, RegisterAck
from slidestore.errors import AuthError
from slidestore.tokens import Operation
from slidestore_server.testing import free_port, wait_http


@dataclass
class Received:
    kind: str
    """Either "register" or "heartbeat"."""
    node_id: str
    message: Register | Heartbeat
    at: float
    """time.monotonic() on arrival."""
    user_agent: str


@dataclass
class RecordingCoordinator:
    secret: str
    port: int = field(default_factory=free_port)
    heartbeat_interval: float = 1.0
    received: list[Received] = field(default_factory=list)
    """Accepted messages, oldest first."""
    refused: int = 0
    """Heartbeats answered with an error (forgotten or failing)."""
    fail_heartbeats: bool = False
    """While True, heartbeats get 503 (and are not recorded)."""
    known: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- what tests look at ---------------------------------------------------------

    def messages(self, kind: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if kind is None or r.kind == kind]

    def forget(self, node_id: str) -> None:
        """The next heartbeat from ``node_id`` gets 404 ``node_unknown``."""
        with self._lock:
            self.known.discard(node_id)

    def wait_for(self, predicate: object, *, timeout: float = 10.0) -> Received:
        """The first accepted message for which ``predicate(received)`` is true."""
        assert callable(predicate)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for received in self.messages():
                if predicate(received):
                    return received
            time.sleep(0.01)
        raise TimeoutError(f"no matching message within {timeout}s; got {self.messages()}")

    # -- the app ----------------------------------------------------------------------

    def app(self) -> Starlette:
        def authorize(request: Request) -> None:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer":
                raise AuthError("no bearer token")
            tokens.verify(self.secret, token.strip()).require(Operation.NODE)

        def error(status: int, code: str, detail: str) -> Response:
            return JSONResponse({"error": code, "detail": detail}, status)

        async def register(request: Request) -> Response:
            try:
                authorize(request)
                message = msgspec.json.decode(await request.body(), type=Register)
            except AuthError as exc:
                return error(401, exc.code, str(exc))
            except msgspec.DecodeError as exc:
                return error(400, "invalid_request", str(exc))
            with self._lock:
                self.known.add(message.node_id)
                self.received.append(self._received("register", message.node_id, message, request))
            ack = RegisterAck(
                heartbeat_interval=self.heartbeat_interval, suspect_after=3.0, dead_after=10.0
            )
            return Response(msgspec.json.encode(ack), media_type="application/json")

        async def heartbeat(request: Request) -> Response:
            node_id = str(request.path_params["node_id"])
            try:
                authorize(request)
                message = msgspec.json.decode(await request.body(), type=Heartbeat)
            except AuthError as exc:
                return error(401, exc.code, str(exc))
            except msgspec.DecodeError as exc:
                return error(400, "invalid_request", str(exc))
            with self._lock:
                if self.fail_heartbeats:
                    self.refused += 1
                    return error(503, "unavailable", "failing on purpose")
                if node_id not in self.known:
                    self.refused += 1
                    return error(404, "node_unknown", f"node {node_id} must register")
                self.received.append(self._received("heartbeat", node_id, message, request))
            ack = HeartbeatAck(state=NodeState.ALIVE)
            return Response(msgspec.json.encode(ack), media_type="application/json")

        async def healthz(request: Request) -> Response:
            return JSONResponse({"status": "ok"})

        return Starlette(
            routes=[
                Route(f"{API}/nodes/register", register, methods=["POST"]),
                Route(f"{API}/nodes/{{node_id}}/heartbeat", heartbeat, methods=["POST"]),
                Route("/healthz", healthz),
            ]
        )

    @staticmethod
    def _received(
        kind: str, node_id: str, message: Register | Heartbeat, request: Request
    ) -> Received:
        return Received(
            kind=kind,
            node_id=node_id,
            message=message,
            at=time.monotonic(),
            user_agent=request.headers.get("user-agent", ""),
        )

    # -- serving ----------------------------------------------------------------------

    def start(self) -> Self:
        config = uvicorn.Config(
            self.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        wait_http(self.url + "/healthz", timeout=10)
        return self

    def stop(self) -> None:
        """Stop listening (the port is free again; :meth:`start` may reuse it)."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

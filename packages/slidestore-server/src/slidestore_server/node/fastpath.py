"""The stored-tile fast path: a pure-ASGI layer in front of the node's routing.

Most viewer requests are Deep Zoom tiles that are stored as is (native tiles, or
prerendered ones) of a slide that is already open. For those, routing, request objects,
exception layers and CORS handling cost more than the ``pread`` itself: this layer
answers them directly, with exactly the bytes and headers the ``tile`` route would send.
Everything it is not sure about — no or invalid token, a closed slide, a tile that
must be rendered, conditional or cross-origin requests — falls through to the app
unchanged, so errors and edge cases keep a single implementation.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slidestore.errors import ReplicaCorrupt, SlidestoreError
from slidestore.tokens import Capability, Operation, Verifier
from slidestore_server.errors import error_response
from slidestore_server.node.state import NodeState
from slidestore_server.node.tiles import MEDIA_JPEG, stored_tile, tile_etag

STORED_MISS: Final = "slidestore.stored_tile_miss"
"""Scope key: the fast path found the slide open and the tile not stored (the route
renders it without asking again)."""

_TILE: Final = re.compile(r"/slides/([0-9a-f]{64})_files/(\d{1,3})/(\d{1,9})_(\d{1,9})\.(jpe?g)")
_FALL_THROUGH: Final = frozenset((b"if-none-match", b"origin", b"range"))


class TileFastPath:
    def __init__(
        self,
        app: ASGIApp,
        node: NodeState,
        verifier: Verifier,
        anonymous: Capability | None = None,
    ) -> None:
        self.app = app
        self.node = node
        self.verifier = verifier
        #: What a request without a token may do (the folder server on loopback); None:
        #: a token is needed, as on a node.
        self.anonymous = anonymous
        max_age = node.settings.cache_max_age
        self._static_headers = [
            (b"content-type", MEDIA_JPEG.encode()),
            (b"cache-control", f"public, max-age={max_age}, immutable".encode()),
            (b"access-control-allow-origin", b"*"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = _TILE.fullmatch(scope["path"])
            if match is not None and await self._answer(scope, send, match):
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, send: Send, match: re.Match[str]) -> bool:
        token = None
        for name, value in scope["headers"]:
            if name in _FALL_THROUGH:
                return False
            if name == b"authorization":
                scheme, _, credential = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    token = credential.strip()
        if token is None and scope["query_string"]:
            token = dict(parse_qsl(scope["query_string"].decode("latin-1"))).get("token")
        if not token and self.anonymous is None:
            return False
        blob_id, level, col, row = match.group(1), *map(int, match.group(2, 3, 4))
        try:
            cap = self.verifier.verify(token) if token else self.anonymous
            if cap is None or not cap.allows(Operation.READ, blob_id):
                return False
            entry = self.node.slides.peek(blob_id)
            if entry is None:
                return False
            tile = stored_tile(self.node, entry, level, col, row, "jpeg")
        except ReplicaCorrupt as exc:
            # Already quarantined: answering here keeps the client from a 404 (the route
            # would find no blob any more) where "read another replica" is the truth.
            scope["endpoint"] = _tile_endpoint
            await error_response(503, exc.code, str(exc))(scope, _no_body, send)
            return True
        except SlidestoreError:
            return False  # the route answers it, with its error body
        if tile is None:
            scope[STORED_MISS] = True
            return False
        # The ``tile`` route's endpoint name, so metrics label both paths alike.
        scope["endpoint"] = _tile_endpoint
        etag = f'"{tile_etag(blob_id, level, col, row, "jpeg")}"'.encode()
        headers = [
            *self._static_headers,
            (b"etag", etag),
            (b"content-length", str(len(tile.data)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": tile.data})
        self.node.access.touch(blob_id)
        return True


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def _tile_endpoint() -> None:
    """Stands for the ``tile`` route in metrics labels."""


_tile_endpoint.__name__ = "tile"

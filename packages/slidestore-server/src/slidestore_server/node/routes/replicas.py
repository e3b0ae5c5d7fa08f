"""``POST /replicas`` (admin): the coordinator tells this node to pull a copy of a blob.

Answers ``Replicated``: 201 after a verified copy, 200 when a copy was already here.
A source that cannot be read is 502 ``source_unavailable``; one whose bytes do not hash
to the id is 502 ``source_corrupt`` (in both cases nothing is kept). An ``archive_url``
other than ``{SLIDESTORE_ARCHIVE_URL}/{blob id}`` (or its ``.zst``/``.ssjx`` form) is 403
before anything is read.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from slidestore.cluster.wire import Replicate
from slidestore.errors import InvalidRequest
from slidestore.tokens import Operation
from slidestore_server.auth import require
from slidestore_server.node.replication import replicate
from slidestore_server.node.state import NodeState

_decoder = msgspec.json.Decoder(Replicate)


async def post_replica(request: Request) -> Response:
    require(request, Operation.ADMIN)
    try:
        order = _decoder.decode(await request.body())
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise InvalidRequest(f"body is not a Replicate message: {exc}") from None
    node: NodeState = request.app.state.node
    answer, copied = await replicate(node, order)
    if copied:
        node.blob_arrived()
    return Response(
        msgspec.json.encode(answer),
        status_code=201 if copied else 200,
        media_type="application/json",
    )


def routes() -> list[BaseRoute]:
    return [Route("/replicas", post_replica, methods=["POST"], name="replicas")]

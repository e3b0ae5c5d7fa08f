"""The coordinator's HTTP calls to storage nodes, each with an admin token it mints.

Exactly three: ``POST {node}/replicas`` (have it pull a copy), ``DELETE {node}/blobs/{id}``
(trim, delete, retire) and ``GET {node}/blobs/{id}`` (stream into the archive). Tokens
come from the SDK's :class:`~slidestore.client.auth.MintedTokens` and error answers are
read by its error mapping (``slidestore.client.http``), like every client of the protocol.
"""

from __future__ import annotations

import hashlib

import anyio
import fsspec
import httpx
import msgspec

from slidestore.client.auth import MintedTokens
from slidestore.client.http import response_error
from slidestore.cluster.wire import PURPOSE_HEADER, REPLICA_PURPOSE, Replicate, Replicated
from slidestore.tokens import Operation

_CHUNK = 1 << 20
#: The slowest copy rate we wait for before calling a copy stuck (bytes per second).
_FLOOR_RATE = 5 << 20


class NodeCallFailed(RuntimeError):
    """A node answered with an error (or not at all): the operation is retried later. The
    cause is the SDK's named error for the answer, when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The node's HTTP status, when it answered (507: it has no room)."""


def _failed(answer: httpx.Response, what: str) -> NodeCallFailed:
    error = response_error(answer, what)
    failed = NodeCallFailed(str(error), status=answer.status_code)
    failed.__cause__ = error
    return failed


class NodeClient:
    def __init__(self, secret: str, client: httpx.AsyncClient) -> None:
        self.secret = secret
        self.client = client
        # One short-lived token reused while fresh: minting costs an HMAC, not a round trip.
        self._tokens = MintedTokens(secret, "coordinator", {Operation.ADMIN}, ttl=300)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._tokens()}"}

    async def replicate(self, target_url: str, order: Replicate) -> Replicated:
        rate = min(order.bytes_per_second or _FLOOR_RATE, _FLOOR_RATE)
        timeout = httpx.Timeout(60.0 + order.size / rate, connect=5.0)
        try:
            answer = await self.client.post(
                f"{target_url}/replicas",
                content=msgspec.json.encode(order),
                headers={**self._headers(), "Content-Type": "application/json"},
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            raise NodeCallFailed(f"POST {target_url}/replicas: {type(exc).__name__}") from exc
        if answer.status_code not in (200, 201):  # 201: copied now; 200: already there
            raise _failed(answer, f"POST {target_url}/replicas")
        return msgspec.json.decode(answer.content, type=Replicated)

    async def delete(self, node_url: str, blob_id: str) -> None:
        """Delete a copy; a node that no longer has it (404) is as good as done."""
        try:
            answer = await self.client.delete(
                f"{node_url}/blobs/{blob_id}", headers=self._headers(), timeout=30.0
            )
        except httpx.HTTPError as exc:
            raise NodeCallFailed(f"DELETE {node_url}/blobs/{blob_id}: {exc!r}") from exc
        if answer.status_code not in (200, 204, 404):
            raise _failed(answer, f"DELETE {node_url}/blobs/{blob_id}")

    async def archive(self, node_url: str, blob_id: str, archive_url: str) -> str:
        """Stream a blob from a node to ``{archive_url}/{blob_id}``; verify its sha256.

        Returns the object's URL. On a mismatch the partial object is removed and
        :class:`NodeCallFailed` raised, so a corrupt copy is never taken for the archive.
        """
        url = f"{archive_url.rstrip('/')}/{blob_id}"
        digest = hashlib.sha256()
        fs, path = fsspec.core.url_to_fs(url)
        try:
            async with self.client.stream(
                "GET",
                f"{node_url}/blobs/{blob_id}",
                headers={**self._headers(), PURPOSE_HEADER: REPLICA_PURPOSE},
                timeout=60.0,
            ) as answer:
                if answer.status_code != 200:
                    await answer.aread()
                    raise _failed(answer, f"GET {node_url}/blobs/{blob_id}")
                parent = path.rsplit("/", 1)[0]
                await anyio.to_thread.run_sync(lambda: fs.makedirs(parent, exist_ok=True))
                out = await anyio.to_thread.run_sync(lambda: fs.open(path, "wb"))
                try:
                    async for chunk in answer.aiter_bytes(_CHUNK):
                        digest.update(chunk)
                        await anyio.to_thread.run_sync(out.write, chunk)
                finally:
                    await anyio.to_thread.run_sync(out.close)
        except httpx.HTTPError as exc:
            raise NodeCallFailed(f"GET {node_url}/blobs/{blob_id}: {exc!r}") from exc
        if digest.hexdigest() != blob_id:
            await anyio.to_thread.run_sync(lambda: fs.rm(path))
            raise NodeCallFailed(f"copy of {blob_id} on {node_url} does not match its sha256")
        return url

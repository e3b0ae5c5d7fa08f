"""The portal's only door to slide storage: the coordinator's API and signed tokens.

The portal never opens slide files. It asks the coordinator where a new slide goes (the
answer carries the ``upload`` grant the browser gets: one upload of that size and content),
checks blobs, gives up its claim on them, reads a replica's normalized metadata, and mints
the narrow tokens it hands to browsers: read (and ``labels`` when the team allows it) on
one blob for a viewer.

Its own token at the coordinator is a client's, not an operator's: ``write`` (placements),
``read`` (blob views) and ``delete``, which drops the portal's claim on a blob and deletes
it only when no other client placed it too. It cannot register nodes, set retention or
delete what it never uploaded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import httpx
import msgspec

from labportal.errors import Problem
from labportal.settings import Settings
from slidestore import tokens
from slidestore.cluster.wire import BlobView, Placement, PlacementRequest
from slidestore.tokens import Operation

log = logging.getLogger("labportal.cluster")

#: Who the portal is to the coordinator: the owner of the blobs it uploads.
CLIENT_NAME = "labportal"


class ClusterUnavailable(Problem):
    status, code = 503, "cluster_unavailable"


class ClusterRefused(Problem):
    """The coordinator or a node said no; its reason is passed on."""

    status, code = 502, "cluster_refused"


class Cluster:
    """A small async client of one coordinator (and of its nodes for slide metadata)."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        self.url = settings.coordinator
        self.secret = settings.cluster_secret
        self.view_ttl = settings.view_token_ttl_seconds
        self._http = httpx.AsyncClient(
            timeout=settings.cluster_timeout_seconds, transport=transport
        )

    @property
    def configured(self) -> bool:
        return bool(self.url and self.secret)

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- tokens ---------------------------------------------------------------------------

    def _client(self) -> dict[str, str]:
        token = tokens.mint(
            self.secret,
            ops={Operation.WRITE, Operation.READ, Operation.DELETE},
            ttl=60,
            subject=CLIENT_NAME,
        )
        return {"Authorization": f"Bearer {token}"}

    def view_token(self, blob_id: str, subject: str, *, labels: bool = False) -> str:
        """Read (and label pictures when allowed) on this one blob, for a short while."""
        ops = {Operation.READ, Operation.LABELS} if labels else {Operation.READ}
        return tokens.mint(self.secret, ops=ops, blob=blob_id, ttl=self.view_ttl, subject=subject)

    # -- coordinator ----------------------------------------------------------------------

    async def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        if not self.configured:
            raise ClusterUnavailable(
                "no slide cluster is configured (LABPORTAL_CLUSTER_URL, LABPORTAL_CLUSTER_SECRET)"
            )
        try:
            headers = {**self._client(), **kw.pop("headers", {})}
            return await self._http.request(method, self.url + path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            log.warning("coordinator unreachable: %s %s: %r", method, path, exc)
            raise ClusterUnavailable("the slide cluster does not answer; try again") from None

    @staticmethod
    def _refused(response: httpx.Response) -> ClusterRefused:
        try:
            detail = str(response.json().get("detail") or response.text)
        except ValueError:
            detail = response.text[:300]
        status = response.status_code
        if status == 507:
            return ClusterRefused(f"the cluster has no room: {detail}", code="no_placement")
        return ClusterRefused(f"the cluster answered {status}: {detail}")

    async def place(self, size: int, sha256: str | None) -> Placement:
        body = msgspec.json.encode(PlacementRequest(size=size, sha256=sha256))
        response = await self._call(
            "POST", "/v1/placements", content=body, headers={"Content-Type": "application/json"}
        )
        if response.status_code != 200:
            raise self._refused(response)
        return msgspec.json.decode(response.content, type=Placement)

    async def blob(self, blob_id: str) -> BlobView | None:
        response = await self._call("GET", f"/v1/blobs/{blob_id}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._refused(response)
        return msgspec.json.decode(response.content, type=BlobView)

    async def arrived(self, blob_id: str, timeout: float = 10.0) -> BlobView | None:
        """The blob once one copy is reported (the node heartbeats right after an upload
        commits, so the coordinator may hear of it a moment after the browser)."""
        response = await self._call(
            "GET",
            f"/v1/blobs/{blob_id}/wait",
            params={"replicas": 1, "timeout": timeout},
            timeout=timeout + 5,
        )
        if response.status_code in (404, 408):
            return None
        if response.status_code != 200:
            raise self._refused(response)
        return msgspec.json.decode(response.content, type=BlobView)

    async def delete(self, blob_id: str) -> None:
        response = await self._call("DELETE", f"/v1/blobs/{blob_id}")
        if response.status_code not in (200, 204, 404):
            raise self._refused(response)

    async def read_ranges(self, view: BlobView, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """The bytes of ``(offset, length)`` ranges of a blob, from the first replica that
        serves them all (a ``download`` token on that one blob, for a minute)."""
        token = tokens.mint(
            self.secret, ops={Operation.DOWNLOAD}, blob=view.blob_id, ttl=60, subject=CLIENT_NAME
        )
        headers = {"Authorization": f"Bearer {token}"}
        for replica in view.replicas:
            url = f"{replica.url.rstrip('/')}/blobs/{view.blob_id}"
            chunks: list[bytes] = []
            try:
                for offset, length in ranges:
                    wanted = {**headers, "Range": f"bytes={offset}-{offset + length - 1}"}
                    response = await self._http.get(url, headers=wanted)
                    if response.status_code != 206 or len(response.content) != length:
                        break
                    chunks.append(response.content)
            except httpx.HTTPError:
                continue
            if len(chunks) == len(ranges):
                return chunks
        raise ClusterUnavailable("no replica of the slide answered; try again")

    async def slide_info(self, view: BlobView) -> dict[str, Any] | None:
        """``/slides/{id}/info`` from the first replica that answers (None: none did)."""
        token = self.view_token(view.blob_id, "labportal")
        for replica in view.replicas:
            url = f"{replica.url.rstrip('/')}/slides/{view.blob_id}/info"
            try:
                response = await self._http.get(url, params={"token": token})
            except httpx.HTTPError:
                continue
            if response.status_code == 200:
                info: dict[str, Any] = response.json()
                return info
        return None


def ready_replicas(view: BlobView) -> int:
    return sum(1 for r in view.replicas if r.state == "alive")

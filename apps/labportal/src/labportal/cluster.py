"""The portal's only door to slide storage: slidestore's client SDK, and signed tokens.

The portal never opens slide files, and it speaks no HTTP to the cluster itself: every call
goes through :func:`slidestore.client.aconnect` (placements, blob views, waits, deletes,
the node list, byte ranges of a replica, a slide's metadata, readiness). This module only
adapts: it hands the SDK a token provider, and turns the SDK's
:class:`~slidestore.errors.SlidestoreError` into the portal's problem documents.

Its own tokens at the coordinator are a client's, not an operator's, minted per request
for that request alone: ``write`` (placements), ``read`` (blob views) and ``delete`` (drop
the portal's claim on a blob; deleted only when no other client placed it too), and
``download`` of one blob for a proof of possession. The one ``admin`` call is readiness's
node list. The browser gets the ``upload`` grant the coordinator's placement carries, and
``read`` (and ``labels`` when the team allows it) on one blob for a viewer. An analysis
task's Dask workers get ``read`` on the one blob it runs on, living as long as the task
may run (:func:`open_for_task`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from labportal.errors import Problem
from labportal.settings import Settings
from slidestore import errors, tokens
from slidestore.client import (
    AsyncCluster,
    BlobView,
    Health,
    MintedTokens,
    Placement,
    PlacementRequest,
    RemoteSlide,
    aconnect,
    connect,
)
from slidestore.tokens import Operation

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("labportal.cluster")

#: Who the portal is to the coordinator: the owner of the blobs it uploads.
CLIENT_NAME = "labportal"
NOT_CONFIGURED = "no slide cluster is configured (LABPORTAL_CLUSTER_URL, LABPORTAL_CLUSTER_SECRET)"


class ClusterUnavailable(Problem):
    status, code = 503, "cluster_unavailable"


class ClusterRefused(Problem):
    """The coordinator or a node said no; its reason is passed on."""

    status, code = 502, "cluster_refused"


def problem(exc: errors.SlidestoreError) -> Problem:
    """The problem document for an error of the SDK."""
    if isinstance(exc, errors.ClusterUnavailable):
        return ClusterUnavailable("the slide cluster does not answer; try again")
    if isinstance(exc, errors.InsufficientStorage):
        return ClusterRefused(f"the cluster has no room: {exc}", code="no_placement")
    return ClusterRefused(f"the cluster answered {exc.status} {exc.code}: {exc}")


@contextlib.contextmanager
def _mapped(what: str) -> Iterator[None]:
    try:
        yield
    except errors.SlidestoreError as exc:
        log.warning("cluster call failed: %s: %s", what, exc)
        raise problem(exc) from None


class Cluster:
    """The SDK's cluster client, with the portal's tokens and problem documents."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        self.url = settings.coordinator
        self.secret = settings.cluster_secret
        self.view_ttl = settings.view_token_ttl_seconds
        self._sdk: AsyncCluster | None = None
        if self.configured:
            self._sdk = aconnect(
                self.url,
                MintedTokens(self.secret, CLIENT_NAME, {Operation.READ}, ttl=60),
                timeout=settings.cluster_timeout_seconds,
                retries=1,
                http=transport,
            )

    @property
    def configured(self) -> bool:
        return bool(self.url and self.secret)

    @property
    def sdk(self) -> AsyncCluster:
        if self._sdk is None:
            raise ClusterUnavailable(NOT_CONFIGURED)
        return self._sdk

    async def aclose(self) -> None:
        if self._sdk is not None:
            await self._sdk.aclose()

    # -- tokens for browsers ----------------------------------------------------------------

    def view_token(self, blob_id: str, subject: str, *, labels: bool = False) -> str:
        """Read (and label pictures when allowed) on this one blob, for a short while."""
        ops = {Operation.READ, Operation.LABELS} if labels else {Operation.READ}
        return tokens.mint(self.secret, ops=ops, blob=blob_id, ttl=self.view_ttl, subject=subject)

    # -- the cluster ------------------------------------------------------------------------

    async def place(self, size: int, sha256: str | None) -> Placement:
        with _mapped("placement"):
            return await self.sdk.place(PlacementRequest(size=size, sha256=sha256))

    async def blob(self, blob_id: str) -> BlobView | None:
        with _mapped(f"blob {blob_id}"):
            try:
                return await self.sdk.info(blob_id)
            except errors.BlobNotFound:
                return None

    async def arrived(self, blob_id: str, timeout: float = 10.0) -> BlobView | None:
        """The blob once one copy is reported (the node heartbeats right after an upload
        commits, so the coordinator may hear of it a moment after the browser)."""
        with _mapped(f"wait for {blob_id}"):
            try:
                return await self.sdk.wait(blob_id, 1, timeout=timeout)
            except (errors.BlobNotFound, errors.ReplicationTimeout):
                return None

    async def delete(self, blob_id: str) -> None:
        with _mapped(f"delete {blob_id}"), contextlib.suppress(errors.BlobNotFound):
            await self.sdk.delete(blob_id)

    async def read_ranges(self, view: BlobView, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """The bytes of ``(offset, length)`` ranges of a blob, from the first replica that
        serves them all (a ``download`` token on that one blob, for a minute)."""
        try:
            return await self.sdk.read_ranges(view, ranges)
        except errors.SlidestoreError as exc:
            log.warning("no replica served the challenge ranges of %s: %s", view.blob_id, exc)
            raise ClusterUnavailable("no replica of the slide answered; try again") from None

    async def region_image(
        self, view: BlobView, region: tuple[int, int, int, int], size: tuple[int, int]
    ) -> bytes:
        """A level-0 region rendered as PNG at ``size`` by a replica; the node's refusal of
        the region is passed on as its problem document."""
        with _mapped(f"region of {view.blob_id}"):
            return await self.sdk.region_image(view, region, size, "png")

    async def slide_info(self, view: BlobView) -> dict[str, Any] | None:
        """``/slides/{id}/info`` from the first replica that answers (None: none did)."""
        return await self.sdk.slide_info(view)

    async def health(self) -> Health:
        """Coordinator and storage nodes, for ``/readyz`` (an error when not configured)."""
        if self._sdk is None:
            return Health(coordinator=f"error: {NOT_CONFIGURED}")
        return await self._sdk.health(nodes=True)


def task_token(settings: Settings, blob_id: str, subject: str) -> str:
    """``read`` on ``blob_id`` alone, for as long as a task may run."""
    return tokens.mint(
        settings.cluster_secret,
        ops={Operation.READ},
        blob=blob_id,
        ttl=settings.task_timeout_seconds,
        subject=subject,
    )


@contextlib.contextmanager
def open_for_task(settings: Settings, blob_id: str, subject: str) -> Iterator[RemoteSlide]:
    """The slide ``blob_id`` through the SDK (blocking: call from a thread), with a token
    that reads that one blob and nothing else, for at most ``task_timeout_seconds``: the
    token travels to the Dask workers that read the tiles."""
    if not (settings.coordinator and settings.cluster_secret):
        raise ClusterUnavailable(NOT_CONFIGURED)
    token = task_token(settings, blob_id, subject)
    with connect(settings.coordinator, token, timeout=settings.cluster_timeout_seconds) as sdk:
        yield sdk.open(blob_id)


def ready_replicas(view: BlobView) -> int:
    return sum(1 for r in view.replicas if r.state == "alive")

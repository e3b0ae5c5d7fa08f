"""Reading one blob from whichever of its replicas answers.

:class:`ReplicaSet` knows the nodes holding a blob (from the coordinator's ``BlobView``),
sends each read to the preferred one and, on a connection error, timeout or 5xx, to the
next. A failed node is tried last for ``down_for`` seconds, so concurrent reads do not all
wait on it. When every replica failed, the list is refreshed from the coordinator once
and the read tried again; only then :class:`~slidestore.errors.ClusterUnavailable`.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import msgspec

from slidestore import errors
from slidestore.client.http import TRANSIENT, Transport, error_code, response_error
from slidestore.cluster import wire
from slidestore.cluster.model import NodeState

_blob_decoder = msgspec.json.Decoder(wire.BlobView)

# A 404 with one of these codes means "this node has no (good) copy": try another replica.
# Any other 404 (a zarr key outside the pyramid) is an answer about the blob itself.
_NOT_HERE = frozenset({"blob_not_found", "slide_not_found"})


async def fetch_blob_view(transport: Transport, blob_id: str) -> wire.BlobView:
    response = await transport.coordinator("GET", f"{wire.API}/blobs/{blob_id}")
    return _blob_decoder.decode(response.content)


def readable_urls(replicas: Sequence[wire.ReplicaView]) -> list[str]:
    """Node URLs to read from: alive first, then suspect, never dead."""
    order = {NodeState.ALIVE: 0, NodeState.SUSPECT: 1}
    usable = [r for r in replicas if r.state in order]
    usable.sort(key=lambda r: order[r.state])
    return [r.url.rstrip("/") for r in usable]


class ReplicaSet:
    """The nodes holding ``blob_id`` and which of them answered lately."""

    def __init__(
        self,
        blob_id: str,
        replicas: Sequence[wire.ReplicaView] | Sequence[str],
        *,
        transport: Transport,
        refresh: bool = True,
        down_for: float = 5.0,
    ) -> None:
        self.blob_id = blob_id
        self.transport = transport
        self.can_refresh = refresh
        self.down_for = down_for
        self.views: tuple[wire.ReplicaView, ...] = ()
        self.urls: list[str] = []
        self._down: dict[str, float] = {}
        self.failovers = 0
        """How many reads had to move on from a replica that failed (for tests/metrics)."""
        self.refreshes = 0
        self.served: collections.Counter[str] = collections.Counter()
        """Successful reads per node URL."""
        self._refresh_lock: asyncio.Lock | None = None
        self._set(replicas)

    def _set(self, replicas: Sequence[wire.ReplicaView] | Sequence[str]) -> None:
        if all(isinstance(r, str) for r in replicas):
            self.views = ()
            self.urls = [str(r).rstrip("/") for r in replicas]
        else:
            self.views = tuple(r for r in replicas if isinstance(r, wire.ReplicaView))
            self.urls = readable_urls(self.views)

    def ordered(self) -> list[str]:
        """Replicas not marked down first (in preference order), then the ones marked down."""
        now = time.monotonic()
        up = [u for u in self.urls if self._down.get(u, 0.0) <= now]
        return up + [u for u in self.urls if u not in up]

    def mark_down(self, url: str) -> None:
        self._down[url] = time.monotonic() + self.down_for

    def mark_up(self, url: str) -> None:
        self._down.pop(url, None)
        if self.urls and self.urls[0] != url and url in self.urls:
            # Stick to the replica that answers: its caches are warm. (One assignment: the
            # list is read from zarr's loop thread and the client's at once.)
            self.urls = [url, *(u for u in self.urls if u != url)]

    async def refresh(self) -> None:
        """Ask the coordinator where the blob lives now."""
        view = await fetch_blob_view(self.transport, self.blob_id)
        self.refreshes += 1
        self._down.clear()
        self._set(view.replicas)

    async def get(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> httpx.Response | None:
        """``GET {replica}{path}``; None for a 404 about the blob's content if ``missing_ok``."""
        failures: list[str] = []
        answered_no_copy = 0
        for round_ in range(2):
            if round_:
                if not self.can_refresh:
                    break
                if self._refresh_lock is None:
                    self._refresh_lock = asyncio.Lock()
                async with self._refresh_lock:
                    await self.refresh()
            for url in self.ordered():
                try:
                    response = await self.transport.client().get(
                        url + path, params=params, headers=self.transport.headers()
                    )
                except TRANSIENT as exc:
                    failures.append(f"{url}: {type(exc).__name__}")
                    self.mark_down(url)
                    self.failovers += 1
                    continue
                if response.status_code >= 500:
                    failures.append(f"{url}: HTTP {response.status_code}")
                    self.mark_down(url)
                    self.failovers += 1
                    continue
                if response.status_code == 404:
                    if error_code(response) in _NOT_HERE:
                        failures.append(f"{url}: no copy")
                        answered_no_copy += 1
                        self.failovers += 1
                        continue
                    if missing_ok:
                        self.mark_up(url)
                        return None
                if response.is_error:
                    raise response_error(response, f"GET {url}{path}")
                self.mark_up(url)
                self.served[url] += 1
                return response
        if failures and answered_no_copy == len(failures):
            raise errors.BlobNotFound(
                f"no replica of blob {self.blob_id} holds it any more ({'; '.join(failures[-6:])})"
            )
        raise errors.ClusterUnavailable(
            f"no replica of blob {self.blob_id} answered GET {path} "
            f"({'; '.join(failures[-6:]) or 'no replicas known'})"
        )

"""Reading one blob from whichever of its replicas answers.

:class:`ReplicaSet` knows the nodes holding a blob (from the coordinator's ``BlobView``),
sends each read to the preferred one and, on a connection error, timeout, 5xx, a copy
that failed its checksums or does not decode, to the next; a slow one is hedged (see
``client/hedging.py``). A failed node is tried last for ``down_for`` seconds, so concurrent reads do not all
wait on it. When every replica failed, the list is refreshed from the coordinator once
and the read tried again; only then :class:`~slidestore.errors.ClusterUnavailable`.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

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
        self.hedges = 0
        """Reads that also asked the next replica because one was slow."""
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
        """``GET {replica}{path}``; None for a 404 about the blob's content if ``missing_ok``.

        A replica that fails (connection error, timeout, 5xx — among them 503
        ``replica_corrupt``, a copy that failed its checksums — a 404 "no copy here", or
        a 422 from a copy that does not decode) sends the read to the next one at once;
        one that is merely slow gets a hedged request to the next after the transport's
        :class:`~slidestore.client.hedging.HedgePolicy` delay: the first good answer wins
        and the other request is cancelled.
        """
        tally = _Tally()
        for round_ in range(2):
            if round_:
                if not self.can_refresh:
                    break
                if self._refresh_lock is None:
                    self._refresh_lock = asyncio.Lock()
                async with self._refresh_lock:
                    await self.refresh()
            answer = await self._race(self.ordered(), path, params, missing_ok, tally)
            if not isinstance(answer, _Retry):
                return answer
        failures = tally.failures
        if failures and tally.no_copy == len(failures):
            raise errors.BlobNotFound(
                f"no replica of blob {self.blob_id} holds it any more ({'; '.join(failures[-6:])})"
            )
        if tally.undecodable is not None and tally.no_copy + tally.undecodable_count == len(
            failures
        ):
            # Every copy says so: it is the blob's own answer, not one bad copy's.
            raise response_error(tally.undecodable, f"GET {path}")
        raise errors.ClusterUnavailable(
            f"no replica of blob {self.blob_id} answered GET {path} "
            f"({'; '.join(failures[-6:]) or 'no replicas known'})"
        )

    async def _race(
        self,
        urls: list[str],
        path: str,
        params: Mapping[str, Any] | None,
        missing_ok: bool,
        tally: _Tally,
    ) -> httpx.Response | _Retry | None:
        """Ask ``urls`` in order, the next one when one fails or is slow."""
        hedge = self.transport.hedge
        queue = list(urls)
        pending: dict[asyncio.Task[tuple[httpx.Response, float]], str] = {}

        def launch() -> None:
            url = queue.pop(0)
            pending[asyncio.ensure_future(self._fetch(url + path, params))] = url

        try:
            while queue or pending:
                if not pending:
                    launch()
                done, _ = await asyncio.wait(
                    pending,
                    timeout=hedge.delay() if queue else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not done:
                    hedge.hedged += 1
                    self.hedges += 1
                    launch()
                    continue
                for task in done:
                    url = pending.pop(task)
                    answer = self._judge(url, path, task, missing_ok, tally)
                    if isinstance(answer, _Retry):
                        continue
                    for slow in pending.values():
                        self.mark_down(slow)  # it lost a race: ask it last for a while
                    return answer
            return _RETRY
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    async def _fetch(
        self, url: str, params: Mapping[str, Any] | None
    ) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        response = await self.transport.client().get(
            url, params=params, headers=self.transport.headers()
        )
        return response, time.monotonic() - started

    def _judge(
        self,
        url: str,
        path: str,
        task: asyncio.Task[tuple[httpx.Response, float]],
        missing_ok: bool,
        tally: _Tally,
    ) -> httpx.Response | _Retry | None:
        """The answer of one replica, or :data:`_RETRY` when another should be asked."""
        exc = task.exception()
        if exc is not None:
            if not isinstance(exc, TRANSIENT):
                raise exc
            tally.failures.append(f"{url}: {type(exc).__name__}")
            self.mark_down(url)
            self.failovers += 1
            return _RETRY
        response, seconds = task.result()
        status = response.status_code
        if status >= 500:
            code = error_code(response)
            tally.failures.append(f"{url}: HTTP {status}" + (f" {code}" if code else ""))
            self.mark_down(url)
            self.failovers += 1
            return _RETRY
        if status == 404:
            if error_code(response) in _NOT_HERE:
                tally.failures.append(f"{url}: no copy")
                tally.no_copy += 1
                self.failovers += 1
                return _RETRY
            if missing_ok:
                self.mark_up(url)
                return None
        if status == 422:
            # This copy's bytes do not decode; another copy's may (a corrupt replica the
            # node could not tell from a bad file). If every copy says so, it is the file.
            tally.failures.append(f"{url}: HTTP 422 {error_code(response) or ''}".rstrip())
            tally.undecodable = response
            tally.undecodable_count += 1
            self.failovers += 1
            return _RETRY
        if response.is_error:
            raise response_error(response, f"GET {url}{path}")
        self.transport.hedge.record(seconds)
        self.mark_up(url)
        self.served[url] += 1
        return response


class _Retry:
    """Marks "this replica gave no answer: ask the next"."""


_RETRY: Final = _Retry()


class _Tally:
    """What the replicas of one read said, for the error when none answered."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.no_copy = 0
        self.undecodable: httpx.Response | None = None
        self.undecodable_count = 0

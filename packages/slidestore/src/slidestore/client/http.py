"""HTTP plumbing shared by every client call: error mapping, retries, per-loop clients.

``error_from`` turns an error answer (``{"error": code, "detail": text}``) into the named
exception of :mod:`slidestore.errors`; it is pure so it can be tested without a server.

:class:`Transport` holds the coordinator URLs, the token provider
(:mod:`slidestore.client.auth`) and the timeouts; it is the one HTTP transport of the wire
protocol (the lab portal and the servers' own calls to each other use it too). An
``httpx.AsyncClient`` is bound to the event loop it first ran on, and the same client
object is used from several loops (the sync :class:`~slidestore.client.Cluster`'s own
loop thread, and zarr's loop thread when a ``zarr.Group`` reads through
:class:`~slidestore.client.FailoverHTTPStore`), so the transport keeps one client per loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import httpx
import msgspec

from slidestore import errors
from slidestore.client.auth import TokenProvider, provider
from slidestore.client.hedging import HedgePolicy
from slidestore.cluster import wire
from slidestore.error_codes import by_code
from slidestore.tokens import Operation

TRANSIENT: Final = (httpx.TransportError,)
"""Failures worth trying elsewhere or again: refused/reset connections, timeouts."""

_STATUS: Final[dict[int, type[errors.SlidestoreError]]] = {
    400: errors.InvalidRequest,
    401: errors.InvalidToken,
    403: errors.Forbidden,
    404: errors.BlobNotFound,
    408: errors.ReplicationTimeout,
    409: errors.UploadOffsetMismatch,
    410: errors.UploadExpired,
    413: errors.UploadTooLarge,
    416: errors.RangeNotSatisfiable,
    422: errors.UnsupportedFormat,
    423: errors.UploadConflict,
    460: errors.ChecksumMismatch,
    507: errors.InsufficientStorage,
}
"""Only for answers without a code slidestore knows (a ``HEAD``, a proxy's page): the
code, when there is one, picks the class from :func:`slidestore.error_codes.by_code`."""

_error_decoder = msgspec.json.Decoder(wire.ErrorBody)


def parse_error(body: bytes) -> wire.ErrorBody | None:
    try:
        return _error_decoder.decode(body)
    except msgspec.DecodeError:
        return None


def error_from(
    status: int, body: bytes = b"", *, context: str = "", headers: Mapping[str, str] | None = None
) -> errors.SlidestoreError:
    """The named exception for an error answer; the server's ``detail`` is the message.

    The body's ``error`` code picks the class when slidestore knows it, else the status
    does; 5xx are :class:`~slidestore.errors.ClusterUnavailable`. A ``HEAD`` answer has no
    body, so only its status counts.
    """
    parsed = parse_error(body)
    klass: type[errors.SlidestoreError] | None = by_code().get(parsed.error) if parsed else None
    if klass is None:
        if status >= 500 and status != 507:
            klass = errors.ClusterUnavailable
        else:
            klass = _STATUS.get(status, errors.SlidestoreError)
    if parsed is not None:
        detail = f"{parsed.detail} (HTTP {status} {parsed.error})"
    else:
        text = body[:300].decode("utf-8", "replace").strip()
        detail = f"HTTP {status}" + (f": {text}" if text else "")
    if context:
        detail = f"{context}: {detail}"
    return klass.from_wire(detail)


def response_error(response: httpx.Response, context: str = "") -> errors.SlidestoreError:
    return error_from(response.status_code, response.content, context=context)


def error_code(response: httpx.Response) -> str | None:
    parsed = parse_error(response.content)
    return parsed.error if parsed else None


def is_transient_status(status: int) -> bool:
    """Answers that say "try again or elsewhere": 5xx except 507 (a real refusal)."""
    return status >= 500 and status != 507


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: about ``base * 2**(attempt-1)``, at most ``cap``."""
    delay: float = min(cap, base * 2 ** max(0, attempt - 1))
    return delay * (0.5 + random.random() / 2)


class Transport:
    """Coordinator URLs, token and timeouts, and one ``httpx.AsyncClient`` per event loop.

    Coordinator calls try every coordinator URL (the last one that answered first) and,
    when none answers, back off and try again ``retries`` times before raising
    :class:`~slidestore.errors.ClusterUnavailable`.
    """

    def __init__(
        self,
        coordinators: str | Sequence[str],
        token: str | TokenProvider | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 5.0,
        http: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        urls = [coordinators] if isinstance(coordinators, str) else list(coordinators)
        if not urls:
            raise errors.InvalidRequest("connect() needs at least one coordinator URL")
        self.coordinators = [u.rstrip("/") for u in urls]
        self.tokens = provider(token)
        self.http = http
        self.default_headers = dict(headers or {})
        """Sent with every request (a server's ``User-Agent``, say)."""
        """What the clients send requests through (None: the network; a test may pass a
        stand-in for a whole cluster)."""
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.hedge = HedgePolicy()
        """Latencies of replica reads and when a slow one is hedged (``client/replicas``)."""
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]
        self._clients = weakref.WeakKeyDictionary()
        self._closed = False

    # -- clients -------------------------------------------------------------------------

    def client(self) -> httpx.AsyncClient:
        """The client of the running event loop (created on first use)."""
        if self._closed:
            raise errors.SlidestoreError("the cluster connection is closed")
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout, connect=min(5.0, self.timeout)),
                follow_redirects=True,
                transport=self.http,
                headers=self.default_headers,
            )
            self._clients[loop] = client
        return client

    @property
    def token(self) -> str | None:
        """The token of the client's usual operations."""
        return self.tokens()

    def headers(
        self,
        token: str | None = None,
        *,
        ops: Iterable[Operation] | None = None,
        blob: str | None = None,
    ) -> dict[str, str]:
        """The ``Authorization`` header: ``token``, else the provider's for ``ops`` on
        ``blob`` (the narrowest one the request needs)."""
        token = token or self.tokens(ops, blob)
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def aclose(self) -> None:
        """Close every client: the current loop's here, other running loops' on their loop."""
        self._closed = True
        clients = list(self._clients.items())
        self._clients.clear()
        current = asyncio.get_running_loop()
        for loop, client in clients:
            if loop is current:
                await client.aclose()
            elif loop.is_running():
                future = asyncio.run_coroutine_threadsafe(client.aclose(), loop)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.wrap_future(future), timeout=5)

    # -- coordinator ---------------------------------------------------------------------

    async def coordinator(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        ok: tuple[int, ...] = (200,),
        ops: Iterable[Operation] | None = None,
        blob: str | None = None,
    ) -> httpx.Response:
        """One call to whichever coordinator answers; error answers raise named errors.

        ``ops`` (and ``blob``) say what the call needs, for a provider that mints tokens.
        """
        headers = self.headers(ops=ops, blob=blob)
        if content is not None:
            headers["Content-Type"] = "application/json"
        failures: list[str] = []
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(backoff_delay(attempt, self.backoff, self.max_backoff))
            for base in list(self.coordinators):
                try:
                    response = await self.client().request(
                        method,
                        base + path,
                        content=content,
                        params=params,
                        headers=headers,
                        timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                    )
                except TRANSIENT as exc:
                    failures.append(f"{base}: {type(exc).__name__} {exc}".strip())
                    continue
                if is_transient_status(response.status_code):
                    failures.append(f"{base}: HTTP {response.status_code}")
                    continue
                if response.status_code not in ok:
                    raise response_error(response, f"{method} {path}")
                self._prefer(base)
                return response
        raise errors.ClusterUnavailable(
            f"{method} {path}: no coordinator answered after {self.retries + 1} rounds "
            f"({'; '.join(failures[-len(self.coordinators) :])})"
        )

    def _prefer(self, base: str) -> None:
        if self.coordinators[0] != base:
            self.coordinators.remove(base)
            self.coordinators.insert(0, base)

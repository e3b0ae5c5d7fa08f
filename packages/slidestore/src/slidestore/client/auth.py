"""Where a client's bearer tokens come from: one fixed token, or one minted per request.

A person or a script holds a token someone gave it (:class:`StaticToken`). A trusted
service that holds the cluster secret (the lab portal, the coordinator calling nodes, a
node heartbeating) mints the narrowest token each request needs (:class:`MintedTokens`):
the operations of that call, on the one blob it is about, for a minute. The transport asks
its provider for every request, so no wide long-lived token sits in a client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from slidestore import tokens
from slidestore.tokens import Operation


@runtime_checkable
class TokenProvider(Protocol):
    """Gives the token for one request: ``ops`` it needs (None: the client's usual ones),
    on ``blob`` (None: any). None means "send no token"."""

    def __call__(
        self, ops: Iterable[Operation] | None = None, blob: str | None = None
    ) -> str | None: ...


class StaticToken:
    """The one token a client was given, whatever the request."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    def __call__(
        self, ops: Iterable[Operation] | None = None, blob: str | None = None
    ) -> str | None:
        return self.token


class MintedTokens:
    """Tokens minted from the cluster secret, per request: ``ops`` (else ``default_ops``)
    on ``blob`` (else every blob) for ``subject``, living ``ttl`` seconds.

    A token is reused while it has more than half its life left, so a busy client signs
    one HMAC a minute per kind of request, not one per request.
    """

    def __init__(
        self,
        secret: str,
        subject: str,
        default_ops: Iterable[Operation],
        *,
        ttl: float = 60.0,
    ) -> None:
        self.secret = secret
        self.subject = subject
        self.default_ops = frozenset(default_ops)
        self.ttl = ttl
        self._cache: dict[tuple[frozenset[Operation], str], tuple[float, str]] = {}
        self._lock = threading.Lock()

    def __call__(
        self, ops: Iterable[Operation] | None = None, blob: str | None = None
    ) -> str | None:
        wanted = frozenset(ops) if ops is not None else self.default_ops
        key = (wanted, blob or tokens.ALL_BLOBS)
        now = time.time()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] > now:
                return cached[1]
            token = tokens.mint(
                self.secret, ops=wanted, blob=key[1], ttl=self.ttl, subject=self.subject, now=now
            )
            if len(self._cache) > 256:  # blob-scoped keys: keep the cache small
                self._cache.clear()
            self._cache[key] = (now + self.ttl / 2, token)
            return token


def provider(token: str | TokenProvider | None) -> TokenProvider:
    """A provider for what ``connect()`` was given: a token string, a provider, or None."""
    if token is None or isinstance(token, str):
        return StaticToken(token)
    return token

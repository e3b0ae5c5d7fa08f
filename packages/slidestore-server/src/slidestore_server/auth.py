"""Bearer capabilities on requests: ``Authorization: Bearer <t>`` or ``?token=<t>``.

The app keeps the cluster secret at ``app.state.secret``. Verification is cached on the
request so several checks in one handler cost one HMAC, and per app (a
``tokens.Verifier``) so a viewer's thousands of tile requests with one token cost one.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from slidestore import tokens
from slidestore.errors import TokenMissing
from slidestore.tokens import Capability, Operation


def bearer(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return conn.query_params.get("token") or None


def capability(conn: HTTPConnection) -> Capability:
    cached = conn.scope.get("slidestore.capability")
    if isinstance(cached, Capability):
        return cached
    token = bearer(conn)
    if token is None:
        raise TokenMissing("this endpoint needs a token (Authorization: Bearer or ?token=)")
    state = conn.app.state
    verifier = getattr(state, "verifier", None)
    if verifier is None:
        verifier = state.verifier = tokens.Verifier(state.secret)
    cap: Capability = verifier.verify(token)
    conn.scope["slidestore.capability"] = cap
    return cap


def require(conn: HTTPConnection, op: Operation, blob: str | None = None) -> Capability:
    """The request's capability, checked for ``op`` on ``blob``; raises 401/403 errors."""
    cap = capability(conn)
    cap.require(op, blob)
    return cap

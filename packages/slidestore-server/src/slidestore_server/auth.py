"""Bearer capabilities on requests: ``Authorization: Bearer <t>`` or ``?token=<t>``.

The app keeps the cluster secret at ``app.state.secret``. Verification is cached on the
request so several checks in one handler cost one HMAC, and per app (a
``tokens.Verifier``) so a viewer's thousands of tile requests with one token cost one.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from slidestore import tokens
from slidestore.errors import Forbidden, TokenMissing
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


def require_upload(conn: HTTPConnection) -> Capability:
    """An ``upload`` grant or an uploader's ``write``: what every tus request needs."""
    cap = capability(conn)
    if not cap.allows(Operation.UPLOAD):
        cap.require(Operation.WRITE)
    return cap


def check_partial_grant(cap: Capability, length: int) -> None:
    """An ``upload`` grant's partial uploads are pieces of its one upload: none larger than
    it (together they are bounded by the upload manager's quota of the grant's size)."""
    if cap.is_upload_grant and (cap.size is None or length > cap.size):
        raise Forbidden(f"this upload token is for {cap.size} bytes, not a part of {length}")


def check_upload_grant(cap: Capability, length: int, sha256: str | None) -> None:
    """An ``upload`` grant makes one upload of the size (and content) it was minted for."""
    if not cap.is_upload_grant:
        return
    if cap.size is None or cap.size != length:
        raise Forbidden(f"this upload token is for {cap.size} bytes, not Upload-Length {length}")
    if cap.blob != tokens.ALL_BLOBS and cap.blob != sha256:
        raise Forbidden(
            "this upload token is for one content: declare its sha256 in Upload-Metadata"
        )

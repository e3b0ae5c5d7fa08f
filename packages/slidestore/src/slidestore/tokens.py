"""Signed capabilities: what a bearer may do, with which blob, until when.

A token is ``<payload>.<signature>``, both base64url without padding. The payload is a
msgspec-encoded :class:`Capability`; the signature is HMAC-SHA256 over the payload text
with the cluster secret. Nodes verify tokens offline; nothing is stored per token.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import secrets
import time

import msgspec

from slidestore.errors import Forbidden, InvalidToken, TokenExpired

ALL_BLOBS = "*"


class Operation(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    DELETE = "delete"
    LABELS = "labels"
    """Read label and macro images, which often show patient identifiers."""
    ADMIN = "admin"


class Capability(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    blob: str = ALL_BLOBS
    """A blob id, or ``*`` for every blob."""
    ops: frozenset[Operation]
    exp: int
    """Expiry, seconds since the epoch."""
    sub: str | None = None
    """Who it was minted for (for logs); not checked."""
    nonce: str = ""

    def allows(self, op: Operation, blob: str | None = None) -> bool:
        if Operation.ADMIN not in self.ops and op not in self.ops:
            return False
        return self.blob == ALL_BLOBS or blob is None or blob == self.blob

    def require(self, op: Operation, blob: str | None = None) -> None:
        if not self.allows(op, blob):
            target = f"blob {blob}" if blob else "this resource"
            raise Forbidden(f"token does not grant {op.value} on {target}")


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Capability)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def mint(
    secret: str | bytes,
    *,
    ops: set[Operation] | frozenset[Operation] | tuple[Operation, ...],
    blob: str = ALL_BLOBS,
    ttl: float = 3600.0,
    subject: str | None = None,
    now: float | None = None,
) -> str:
    """A token granting ``ops`` on ``blob`` for ``ttl`` seconds."""
    cap = Capability(
        blob=blob,
        ops=frozenset(ops),
        exp=int((time.time() if now is None else now) + ttl),
        sub=subject,
        nonce=secrets.token_hex(4),
    )
    payload = _b64(_encoder.encode(cap))
    signature = hmac.new(_key(secret), payload.encode("ascii"), hashlib.sha256).digest()
    return f"{payload}.{_b64(signature)}"


def verify(secret: str | bytes, token: str, *, now: float | None = None) -> Capability:
    """The capability a token carries; :class:`InvalidToken` or :class:`TokenExpired`."""
    payload, dot, signature = token.partition(".")
    if not dot or not payload or not signature or len(token) > 4096:
        raise InvalidToken("malformed token")
    expected = hmac.new(_key(secret), payload.encode("ascii", "replace"), hashlib.sha256).digest()
    try:
        given = _unb64(signature)
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken("malformed token signature") from exc
    if not hmac.compare_digest(expected, given):
        raise InvalidToken("token signature does not verify")
    try:
        cap = _decoder.decode(_unb64(payload))
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise InvalidToken("malformed token payload") from exc
    if cap.exp < (time.time() if now is None else now):
        raise TokenExpired("token has expired")
    return cap


class Verifier:
    """:func:`verify` with a bounded memory of tokens that verified before.

    A viewer sends the same token with every tile, so a server verifies it once and then
    only checks the expiry. Only tokens that verified are remembered: a forged one always
    goes through the full constant-time check.
    """

    def __init__(self, secret: str | bytes, *, max_entries: int = 4096) -> None:
        self._secret = _key(secret)
        self._max_entries = max_entries
        self._known: dict[str, Capability] = {}

    def verify(self, token: str, *, now: float | None = None) -> Capability:
        cap = self._known.get(token)
        if cap is None:
            cap = verify(self._secret, token, now=now)
            if len(self._known) >= self._max_entries:
                self._known.clear()  # rare; simpler than LRU and as good for a token mix
            self._known[token] = cap
        elif cap.exp < (time.time() if now is None else now):
            self._known.pop(token, None)
            raise TokenExpired("token has expired")
        return cap

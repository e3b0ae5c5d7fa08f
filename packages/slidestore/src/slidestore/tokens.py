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
import math
import secrets
import time

import msgspec

from slidestore.errors import Forbidden, InvalidToken, TokenExpired, WeakSecret

__all__ = [
    "ALL_BLOBS",
    "Capability",
    "Operation",
    "Verifier",
    "WeakSecret",
    "check_secret",
    "mint",
    "new_secret",
    "verify",
]

ALL_BLOBS = "*"


class Operation(enum.StrEnum):
    READ = "read"
    """Tiles, regions, the zarr pyramid, the thumbnail and the slide's info (vendor
    properties that may name people or files removed)."""
    DOWNLOAD = "download"
    """The raw file's bytes, and the info's unredacted vendor properties: whoever has the
    file has its label and macro too, so this goes only where ``labels`` would."""
    LABELS = "labels"
    """Read label and macro images, which often show patient identifiers."""
    UPLOAD = "upload"
    """Create one tus upload session of exactly ``size`` bytes (of content ``blob`` unless
    ``*``) and write to it; what placements hand out and browsers get."""
    WRITE = "write"
    """A client of the cluster that stores content: ask for placements (which hand out
    ``upload`` grants) and upload directly."""
    DELETE = "delete"
    ADMIN = "admin"
    """Everything but ``node``: operators and the coordinator."""
    NODE = "node"
    """Register and heartbeat as a storage node. Not implied by ``admin``: a leaked admin
    token must not let a stranger join the cluster and be handed replicas and uploads."""


class Capability(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    blob: str = ALL_BLOBS
    """A blob id, or ``*`` for every blob."""
    ops: frozenset[Operation]
    exp: int
    """Expiry, seconds since the epoch."""
    sub: str | None = None
    """Who it was minted for (for logs); not checked."""
    nonce: str = ""
    """Random per grant; an upload session is bound to the nonce of the grant that made
    it, and a grant is renewed by minting its nonce again with a later expiry."""
    size: int | None = None
    """For ``upload``: the exact number of bytes the one session it creates may hold."""

    def allows(self, op: Operation, blob: str | None = None) -> bool:
        if op not in self.ops and (op is Operation.NODE or Operation.ADMIN not in self.ops):
            return False
        return self.blob == ALL_BLOBS or blob is None or blob == self.blob

    @property
    def is_upload_grant(self) -> bool:
        """A narrow ``upload`` grant (not an operator's ``write`` or ``admin``)."""
        return Operation.UPLOAD in self.ops and not self.ops & {Operation.WRITE, Operation.ADMIN}

    def require(self, op: Operation, blob: str | None = None) -> None:
        if not self.allows(op, blob):
            target = f"blob {blob}" if blob else "this resource"
            raise Forbidden(f"token does not grant {op.value} on {target}")


#: Secrets anyone could know: shipped defaults and examples from earlier releases.
KNOWN_SECRETS = frozenset({"dev-secret-change-me", "demo-secret", "secret", "changeme"})
MIN_SECRET_BYTES = 32
#: 32 random bytes written in base64 take 43 characters (hex: 64).
MIN_SECRET_CHARS = 43


def new_secret() -> str:
    """A fresh cluster secret: 32 random bytes, base64url (what ``slidestore-server
    secret`` prints)."""
    return secrets.token_urlsafe(MIN_SECRET_BYTES)


def check_secret(secret: str, setting: str = "SLIDESTORE_SECRET") -> str:
    """``secret`` if it can sign tokens nobody else can mint; else :class:`WeakSecret`
    naming the setting and how to make a good one.

    Randomness cannot be measured from one string, so this refuses what is certainly weak:
    unset, a known default, shorter than 32 bytes, or too few distinct characters for a
    random string of that length.
    """
    problem = None
    if not secret:
        problem = "is not set"
    elif secret in KNOWN_SECRETS:
        problem = "is a publicly known default"
    elif len(secret) < MIN_SECRET_CHARS:
        problem = (
            f"is {len(secret)} characters; at least {MIN_SECRET_CHARS} are needed "
            f"({MIN_SECRET_BYTES} random bytes in base64)"
        )
    elif len(set(secret)) < 10:
        problem = "has too few distinct characters to be random"
    if problem is not None:
        raise WeakSecret(
            f"{setting} {problem}: every token is signed with it, so anyone who can guess it "
            "can read and delete every slide. Make one with `slidestore-server secret` "
            f"(32 random bytes) and set {setting} to it on every node, coordinator and portal."
        )
    return secret


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
    size: int | None = None,
    nonce: str | None = None,
) -> str:
    """A token granting ``ops`` on ``blob`` for ``ttl`` seconds.

    ``size`` bounds an ``upload`` grant; ``nonce`` renews an existing grant (same nonce,
    later expiry) instead of making a new one.
    """
    cap = Capability(
        blob=blob,
        ops=frozenset(ops),
        # Rounded up: a token lives at least ``ttl`` (a page renewing at 75% of it must
        # never hold one that died early).
        exp=math.ceil((time.time() if now is None else now) + ttl),
        sub=subject,
        nonce=secrets.token_hex(8) if nonce is None else nonce,
        size=size,
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

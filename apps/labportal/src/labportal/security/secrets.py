"""Random bearer secrets (session cookies, API tokens, invitation links) and their digests."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "lpt_"


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def digest(secret: str) -> str:
    """What is stored: a sha256 hex digest (the secrets are long and random, no salt needed)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_api_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from labportal.domain import validation

Scope = Literal["teams:read", "teams:write", "cases:read", "cases:write"]


class RegisterIn(msgspec.Struct):
    email: Annotated[str, Meta(max_length=254)]
    password: Annotated[str, Meta(max_length=256)]
    display_name: Annotated[str, Meta(min_length=1, max_length=100)]

    def __post_init__(self) -> None:
        self.email = validation.email(self.email)
        self.password = validation.password(self.password)
        self.display_name = validation.line(self.display_name, "display_name")


class LoginIn(msgspec.Struct):
    email: Annotated[str, Meta(max_length=254)]
    password: Annotated[str, Meta(max_length=256)]

    def __post_init__(self) -> None:
        self.email = self.email.strip().lower()


class PasswordChangeIn(msgspec.Struct):
    current_password: Annotated[str, Meta(max_length=256)]
    new_password: Annotated[str, Meta(max_length=256)]
    revoke_sessions: bool = True
    """End my other browser sessions and revoke my API tokens (this session stays)."""

    def __post_init__(self) -> None:
        self.new_password = validation.password(self.new_password, "new_password")


class UserOut(msgspec.Struct):
    id: uuid.UUID
    email: str
    display_name: str
    created_at: datetime.datetime


class UserRef(msgspec.Struct):
    id: uuid.UUID
    display_name: str


class RegisteredOut(msgspec.Struct):
    """The same answer whether or not the e-mail already had an account."""

    detail: str = "If this e-mail address had no account, one was created. Log in to continue."


class SessionOut(msgspec.Struct):
    user: UserOut
    csrf_token: str | None = None
    """Send it back as the X-CSRF-Token header on every unsafe request made with the cookie."""


class TokenCreateIn(msgspec.Struct):
    name: Annotated[str, Meta(min_length=1, max_length=100)]
    scopes: Annotated[list[Scope], Meta(min_length=1, max_length=4)]
    expires_in_days: Annotated[int, Meta(ge=1, le=365)] = 30

    def __post_init__(self) -> None:
        self.name = validation.line(self.name, "name")
        self.scopes = sorted(set(self.scopes))  # type: ignore[arg-type]


class TokenLoginIn(msgspec.Struct, forbid_unknown_fields=True):
    """E-mail and password for a bearer token, without a browser session (scripts)."""

    email: Annotated[str, Meta(max_length=254)]
    password: Annotated[str, Meta(max_length=256)]
    scopes: Annotated[list[Scope], Meta(min_length=1, max_length=4)] = msgspec.field(
        default_factory=lambda: ["teams:read", "teams:write", "cases:read", "cases:write"]
    )
    ttl_seconds: Annotated[int, Meta(ge=60, le=365 * 86400)] = 3600

    def __post_init__(self) -> None:
        self.email = self.email.strip().lower()
        self.scopes = sorted(set(self.scopes))  # type: ignore[arg-type]


class BearerTokenOut(msgspec.Struct):
    token: str
    """The secret, shown only once (it is a personal API token: listed and revocable
    under /api/tokens)."""
    token_type: Literal["bearer"]
    expires_at: datetime.datetime
    scopes: list[str]


class TokenOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    expires_at: datetime.datetime
    created_at: datetime.datetime
    last_used_at: datetime.datetime | None


class TokenCreatedOut(TokenOut):
    token: str = ""
    """The secret, shown only once."""

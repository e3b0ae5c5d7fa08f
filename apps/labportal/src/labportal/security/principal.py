"""Who is calling: a browser session (cookie + CSRF header) or a personal API token (scopes).

Route handlers that accept API tokens name the scope they need in ``opt={"scope": ...}``;
handlers without a scope are for browser sessions only (token management, password change).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any, Literal

from litestar import Request
from litestar.di import NamedDependency
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from labportal.db.base import utcnow
from labportal.domain.accounts.models import ApiToken, User, UserSession
from labportal.errors import Forbidden, Unauthorized
from labportal.security.secrets import TOKEN_PREFIX, digest

SESSION_COOKIE = "labportal_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SCOPES = ("teams:read", "teams:write", "cases:read", "cases:write")


@dataclass
class Principal:
    user: User
    via: Literal["session", "token"]
    session: UserSession | None = None
    token: ApiToken | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)


async def authenticate(
    request: Request[Any, Any, Any], db: NamedDependency[AsyncSession]
) -> Principal | None:
    """The caller, or None; raises 401 for a bad/expired bearer token."""
    header = request.headers.get("authorization", "")
    now = utcnow()
    if header:
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value.startswith(TOKEN_PREFIX):
            raise Unauthorized("expected 'Authorization: Bearer lpt_...'", code="invalid_token")
        token = await db.scalar(select(ApiToken).where(ApiToken.token_hash == digest(value)))
        if token is None:
            raise Unauthorized("unknown or revoked API token", code="invalid_token")
        if token.expires_at <= now:
            raise Unauthorized("API token expired", code="token_expired")
        user = await db.get_one(User, token.user_id)
        token.last_used_at = now
        return Principal(user, "token", token=token, scopes=frozenset(token.scopes))
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    session = await db.scalar(select(UserSession).where(UserSession.token_hash == digest(cookie)))
    if session is None or session.expires_at <= now:
        return None
    user = await db.get_one(User, session.user_id)
    return Principal(user, "session", session=session, scopes=frozenset(SCOPES))


def check_access(request: Request[Any, Any, Any], principal: NamedDependency[Principal]) -> None:
    """Scopes for tokens; the CSRF header for unsafe requests made with the session cookie."""
    scope = request.route_handler.opt.get("scope")
    if principal.via == "token":
        if scope is None:
            raise Forbidden("this endpoint needs a browser session, not an API token")
        if scope != "*" and scope not in principal.scopes:
            raise Forbidden(f"API token lacks the '{scope}' scope", code="insufficient_scope")
        return
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    assert principal.session is not None
    if not sent or not hmac.compare_digest(sent, principal.session.csrf_token):
        raise Forbidden("missing or invalid X-CSRF-Token header", code="csrf_failed")


async def provide_principal(
    request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession]
) -> Principal:
    principal = await authenticate(request, db_session)
    if principal is None:
        raise Unauthorized(
            "log in or send 'Authorization: Bearer <API token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    check_access(request, principal)
    return principal


async def provide_optional_user(
    request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession]
) -> Principal | None:
    """For HTML pages: the session user or None (pages redirect to the login form)."""
    try:
        principal = await authenticate(request, db_session)
    except Unauthorized:
        return None
    return principal if principal is not None and principal.via == "session" else None

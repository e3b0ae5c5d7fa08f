"""/api/auth (register, login, logout, me, password) and /api/tokens."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_202_ACCEPTED,
    HTTP_204_NO_CONTENT,
)

from labportal.deps import provide_accounts
from labportal.domain.accounts.convert import token_out, user_out
from labportal.domain.accounts.models import User, UserSession
from labportal.domain.accounts.schemas import (
    BearerTokenOut,
    LoginIn,
    PasswordChangeIn,
    RegisteredOut,
    RegisterIn,
    SessionOut,
    TokenCreatedOut,
    TokenCreateIn,
    TokenLoginIn,
    TokenOut,
    UserOut,
)
from labportal.domain.accounts.services import AccountService
from labportal.security.origin import UNAUTHENTICATED_WRITE
from labportal.security.principal import SESSION_COOKIE, Principal
from labportal.settings import Settings


def _session_cookie(settings: NamedDependency[Settings], value: str | None) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value=value or "",
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
        max_age=settings.session_ttl_seconds if value else 0,
    )


def _address(request: Request[Any, Any, Any]) -> str:
    """The client's address (uvicorn sets it from X-Forwarded-For for trusted proxies)."""
    return request.client.host if request.client else "unknown"


def _logged_in(
    user: User, cookie: str, session: UserSession, settings: NamedDependency[Settings], status: int
) -> Response[SessionOut]:
    return Response(
        SessionOut(user=user_out(user), csrf_token=session.csrf_token),
        status_code=status,
        cookies=[_session_cookie(settings, cookie)],
    )


class AuthController(Controller):
    path = "/api/auth"
    tags = ["accounts"]
    dependencies = {"accounts": Provide(provide_accounts, sync_to_thread=False)}

    @post(
        "/register",
        guards=UNAUTHENTICATED_WRITE,
        status_code=HTTP_202_ACCEPTED,
        summary="Create an account (then log in); the answer does not say whether it existed",
    )
    async def register(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[RegisterIn],
        accounts: NamedDependency[AccountService],
    ) -> RegisteredOut:
        await accounts.register(data, _address(request))
        return RegisteredOut()

    @post(
        "/login",
        guards=UNAUTHENTICATED_WRITE,
        summary="Log in: sets the HttpOnly session cookie, returns the CSRF token",
    )
    async def login(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[LoginIn],
        accounts: NamedDependency[AccountService],
        settings: NamedDependency[Settings],
    ) -> Response[SessionOut]:
        user = await accounts.authenticate(data.email, data.password, _address(request))
        cookie, session = await accounts.open_session(user)
        return _logged_in(user, cookie, session, settings, HTTP_200_OK)

    @post(
        "/token",
        guards=UNAUTHENTICATED_WRITE,
        status_code=HTTP_201_CREATED,
        summary="E-mail and password for a scoped, expiring bearer token (scripts; no "
        "session). Rate-limited like login",
    )
    async def token(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[TokenLoginIn],
        accounts: NamedDependency[AccountService],
    ) -> BearerTokenOut:
        user = await accounts.authenticate(data.email, data.password, _address(request))
        lifetime = datetime.timedelta(seconds=data.ttl_seconds)
        request_in = TokenCreateIn(name="POST /api/auth/token", scopes=data.scopes)
        secret, token = await accounts.create_token(user, request_in, lifetime)
        return BearerTokenOut(
            token=secret, token_type="bearer", expires_at=token.expires_at, scopes=token.scopes
        )

    @post("/logout", status_code=HTTP_204_NO_CONTENT, summary="Log out (ends this session)")
    async def logout(
        self,
        principal: NamedDependency[Principal],
        accounts: NamedDependency[AccountService],
        settings: NamedDependency[Settings],
    ) -> Response[None]:
        if principal.session is not None:
            await accounts.close_session(principal.session)
        return Response(None, status_code=204, cookies=[_session_cookie(settings, None)])

    @get("/me", opt={"scope": "*"}, summary="The caller (with the CSRF token for a session)")
    async def me(self, principal: NamedDependency[Principal]) -> SessionOut:
        csrf = principal.session.csrf_token if principal.session else None
        return SessionOut(user=user_out(principal.user), csrf_token=csrf)

    @post("/password", status_code=HTTP_204_NO_CONTENT, summary="Change the password")
    async def change_password(
        self,
        data: JSONBody[PasswordChangeIn],
        principal: NamedDependency[Principal],
        accounts: NamedDependency[AccountService],
    ) -> None:
        await accounts.change_password(
            principal.user,
            data.current_password,
            data.new_password,
            keep=principal.session,
            revoke=data.revoke_sessions,
        )


class TokenController(Controller):
    path = "/api/tokens"
    tags = ["accounts"]
    dependencies = {"accounts": Provide(provide_accounts, sync_to_thread=False)}

    @get("/", summary="My personal API tokens")
    async def list_tokens(
        self, principal: NamedDependency[Principal], accounts: NamedDependency[AccountService]
    ) -> list[TokenOut]:
        return [token_out(t) for t in await accounts.list_tokens(principal.user)]

    @post("/", summary="Create an API token (the secret is shown once)")
    async def create_token(
        self,
        data: JSONBody[TokenCreateIn],
        principal: NamedDependency[Principal],
        accounts: NamedDependency[AccountService],
    ) -> TokenCreatedOut:
        secret, token = await accounts.create_token(principal.user, data)
        out = token_out(token, secret)
        assert isinstance(out, TokenCreatedOut)
        return out

    @delete("/{token_id:uuid}", summary="Revoke an API token")
    async def revoke_token(
        self,
        token_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        accounts: NamedDependency[AccountService],
    ) -> None:
        await accounts.revoke_token(principal.user, token_id)


__all__ = ["AuthController", "TokenController", "UserOut"]

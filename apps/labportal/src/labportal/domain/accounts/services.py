"""Accounts: registration, login/logout, password change, API tokens."""

from __future__ import annotations

import datetime
import uuid

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import delete, select

from labportal.db.base import utcnow
from labportal.domain.accounts.models import ApiToken, User, UserSession
from labportal.domain.accounts.schemas import RegisterIn, TokenCreateIn
from labportal.errors import NotFound, TooManyRequests, Unauthorized
from labportal.security.passwords import Passwords
from labportal.security.ratelimit import AttemptLimiter, LoginRateLimiter
from labportal.security.secrets import digest, new_api_token, new_secret
from labportal.settings import Settings


def _refuse_for(wait: int, what: str) -> None:
    if wait:
        raise TooManyRequests(
            f"{what}; try again in {wait} s", headers={"Retry-After": str(wait)}, retry_after=wait
        )


class UserRepository(SQLAlchemyAsyncRepository[User]):
    model_type = User


class AccountService(SQLAlchemyAsyncRepositoryService[User, UserRepository]):
    repository_type = UserRepository

    def configure(
        self,
        settings: Settings,
        passwords: Passwords,
        limiter: LoginRateLimiter,
        registrations: AttemptLimiter,
    ) -> AccountService:
        self.settings, self.passwords, self.limiter = settings, passwords, limiter
        self.registrations = registrations
        return self

    async def register(self, data: RegisterIn, address: str) -> None:
        """Create the account unless the e-mail has one. Either way the caller learns the
        same (and waits as long: the password is hashed in both cases), so registration
        does not tell who has an account; nobody is logged in by it."""
        _refuse_for(self.registrations.attempt(address), "too many registrations")
        password_hash = await self.passwords.hash(data.password)
        if await self.repository.exists(email=data.email):
            return
        user = User(email=data.email, display_name=data.display_name, password_hash=password_hash)
        await self.repository.add(user)

    async def authenticate(self, email: str, password: str, address: str) -> User:
        _refuse_for(self.limiter.retry_after(email, address), "too many failed logins")
        user = await self.repository.get_one_or_none(email=email)
        if not await self.passwords.verify(user.password_hash if user else None, password):
            self.limiter.failed(email, address)
            raise Unauthorized("wrong e-mail or password", code="invalid_credentials")
        self.limiter.succeeded(email, address)
        assert user is not None
        return user

    async def open_session(self, user: User) -> tuple[str, UserSession]:
        """A new browser session; returns the cookie value (only its digest is stored)."""
        cookie = new_secret()
        session = UserSession(
            user_id=user.id,
            token_hash=digest(cookie),
            csrf_token=new_secret(24),
            expires_at=utcnow() + datetime.timedelta(seconds=self.settings.session_ttl_seconds),
        )
        self.repository.session.add(session)
        await self.repository.session.flush()
        return cookie, session

    async def close_session(self, session: UserSession) -> None:
        await self.repository.session.delete(session)

    async def change_password(
        self, user: User, current: str, new: str, keep: UserSession | None, revoke: bool
    ) -> None:
        """With ``revoke`` (the default: a changed password is often a stolen one), every
        other credential of the user ends: browser sessions but ``keep``, and API tokens."""
        if not await self.passwords.verify(user.password_hash, current):
            raise Unauthorized("current password is wrong", code="invalid_credentials")
        user.password_hash = await self.passwords.hash(new)
        if not revoke:
            return
        db = self.repository.session
        sessions = delete(UserSession).where(UserSession.user_id == user.id)
        if keep is not None:
            sessions = sessions.where(UserSession.id != keep.id)
        await db.execute(sessions)
        await db.execute(delete(ApiToken).where(ApiToken.user_id == user.id))

    # -- API tokens ---------------------------------------------------------------------

    async def create_token(
        self,
        user: User,
        data: TokenCreateIn,
        lifetime: datetime.timedelta | None = None,
    ) -> tuple[str, ApiToken]:
        secret = new_api_token()
        token = ApiToken(
            user_id=user.id,
            name=data.name,
            prefix=secret[:10],
            token_hash=digest(secret),
            scopes=list(data.scopes),
            expires_at=utcnow() + (lifetime or datetime.timedelta(days=data.expires_in_days)),
            last_used_at=None,
        )
        self.repository.session.add(token)
        await self.repository.session.flush()
        return secret, token

    async def list_tokens(self, user: User) -> list[ApiToken]:
        rows = await self.repository.session.scalars(
            select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.created_at)
        )
        return list(rows)

    async def revoke_token(self, user: User, token_id: uuid.UUID) -> None:
        token = await self.repository.session.get(ApiToken, token_id)
        if token is None or token.user_id != user.id:
            raise NotFound("no such API token")
        await self.repository.session.delete(token)

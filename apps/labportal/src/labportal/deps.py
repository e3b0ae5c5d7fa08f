"""Dependency providers shared by the controllers."""

from __future__ import annotations

from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from labportal.domain.accounts.services import AccountService
from labportal.settings import Settings


def provide_settings(state: State) -> Settings:
    return state.settings  # type: ignore[no-any-return]


def provide_accounts(db_session: NamedDependency[AsyncSession], state: State) -> AccountService:
    return AccountService(session=db_session).configure(
        state.settings, state.passwords, state.login_limiter, state.register_limiter
    )

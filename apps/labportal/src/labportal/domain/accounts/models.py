from __future__ import annotations

import datetime
import uuid

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from labportal.db.base import Entity


class User(Entity):
    __tablename__ = "user_account"
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))


class UserSession(Entity):
    """A browser session: the cookie holds a random token, the row its sha256."""

    __tablename__ = "user_session"
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime.datetime]


class ApiToken(Entity):
    """A personal API token for scripts: scopes, expiry, stored as a sha256."""

    __tablename__ = "api_token"
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    expires_at: Mapped[datetime.datetime]
    last_used_at: Mapped[datetime.datetime | None]

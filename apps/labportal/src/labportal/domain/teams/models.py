from __future__ import annotations

import datetime
import uuid

from sqlalchemy import Float, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from labportal.db.base import Entity
from labportal.domain.accounts.models import User


class Team(Entity):
    __tablename__ = "team"
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    label_min_role: Mapped[str] = mapped_column(String(16), default="admin", server_default="admin")
    """The weakest role that may see slide labels and macro photos (patient identifiers)."""
    archive_after_days: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Days a slide of the team may go unread before the cluster archives it (None: the
    cluster's default; 0: never). Set on every blob of the team through the SDK."""


class Membership(Entity):
    __tablename__ = "team_membership"
    __table_args__ = (UniqueConstraint("team_id", "user_id"),)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    user: Mapped[User] = relationship(lazy="joined", innerjoin=True)


class Invitation(Entity):
    """An invitation link: the URL carries a random token, the row its sha256."""

    __tablename__ = "team_invitation"
    team_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("team.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    email: Mapped[str | None] = mapped_column(String(254))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    expires_at: Mapped[datetime.datetime]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    responded_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    responded_at: Mapped[datetime.datetime | None]
    team: Mapped[Team] = relationship(lazy="joined", innerjoin=True)

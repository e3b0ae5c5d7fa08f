from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from labportal.db.base import Base, Entity
from labportal.domain.accounts.models import User


class CaseTag(Base):
    __tablename__ = "case_tag"
    case_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("case.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(50), primary_key=True, index=True)


class Case(Entity):
    __tablename__ = "case"
    team_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("team.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), index=True
    )
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    """Values of the team-defined case fields, as checked against ``fields_version``."""
    fields_version: Mapped[int | None] = mapped_column(Integer)
    tag_rows: Mapped[list[CaseTag]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by=CaseTag.tag
    )
    assignee: Mapped[User | None] = relationship(foreign_keys=[assignee_id], lazy="joined")
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id], lazy="joined")

    @property
    def tags(self) -> list[str]:
        return [row.tag for row in self.tag_rows]


class CaseEvent(Entity):
    """One line of a case's audit trail: who did what, and the fields' old and new values."""

    __tablename__ = "case_event"
    case_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("case.id", ondelete="CASCADE"), index=True
    )
    actor_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    action: Mapped[str] = mapped_column(String(32))
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    actor: Mapped[User | None] = relationship(lazy="joined")

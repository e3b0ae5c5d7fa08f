from __future__ import annotations

import datetime
import uuid
from typing import Any

from sqlalchemy import JSON, ForeignKey, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from labportal.db.base import Entity
from labportal.domain.accounts.models import User


class Comment(Entity):
    """A comment; one without a parent starts a thread, which can be resolved."""

    __tablename__ = "case_comment"
    case_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("case.id", ondelete="CASCADE"), index=True
    )
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("case_comment.id", ondelete="CASCADE"), index=True
    )
    author_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    body: Mapped[str] = mapped_column(Text)
    resolved: Mapped[bool] = mapped_column(default=False)
    resolved_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    resolved_at: Mapped[datetime.datetime | None]
    material_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("case_material.id", ondelete="SET NULL"), index=True
    )
    """A thread anchored to a slide of the case (and to ``region`` on it, when given)."""
    region: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """{"x", "y", "width", "height"} in level-0 pixels."""
    author: Mapped[User | None] = relationship(foreign_keys=[author_id], lazy="joined")
    resolved_by: Mapped[User | None] = relationship(foreign_keys=[resolved_by_id], lazy="joined")

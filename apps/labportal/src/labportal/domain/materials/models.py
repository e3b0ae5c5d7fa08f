from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from labportal.db.base import Entity
from labportal.domain.accounts.models import User


class Material(Entity):
    """A slide attached to a case. The bytes live in the cluster under ``blob_id`` (sha256);
    several materials may share one blob (the same file attached twice)."""

    __tablename__ = "case_material"
    case_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("case.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    """What the browser declared, checked against the blob id on completion."""
    blob_id: Mapped[str | None] = mapped_column(String(64), index=True)
    """Set once the upload completed (or at once when the cluster already had it)."""
    error: Mapped[str] = mapped_column(Text, default="")
    """Why the upload failed (the node's reason), shown to the user."""
    challenge: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    """The open proof-of-possession challenge (``possession.Challenge``); cleared by the
    one completion attempt it allows."""
    slide: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The node's normalized metadata, kept once read (it never changes for a blob)."""
    scanner: Mapped[str | None] = mapped_column(String(200), index=True)
    """Scanner model and id, from ``slide`` (the searchable copy of the normalised facts)."""
    objective_power: Mapped[float | None] = mapped_column(Float)
    mpp: Mapped[float | None] = mapped_column(Float, index=True)
    scanned_at: Mapped[str | None] = mapped_column(String(40), index=True)
    """ISO 8601 date or date-time of the scan, as precise as the file records it."""
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    fields_version: Mapped[int | None] = mapped_column(Integer)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    created_by: Mapped[User | None] = relationship(lazy="joined")

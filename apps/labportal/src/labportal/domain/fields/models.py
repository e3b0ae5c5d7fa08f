"""Team-defined fields: the versioned definitions and the index rows that make values searchable."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from labportal.db.base import Base, Entity


class FieldSchema(Entity):
    """One version of the fields a team's cases (or materials) carry. Never changed once
    written: a new definition is a new row with the next version."""

    __tablename__ = "field_schema"
    __table_args__ = (UniqueConstraint("team_id", "target", "version"),)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(String(16))
    """``case`` or ``material``."""
    version: Mapped[int] = mapped_column(Integer)
    fields: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )


class FieldValue(Base):
    """A record's value of one field, typed for comparison: ``text`` for strings, enums,
    booleans and ISO dates (which sort as text), ``number`` for ints and numbers. Rewritten
    with the record's fields on every write; the record's JSON stays the source of truth."""

    __tablename__ = "field_value"
    __table_args__ = (
        Index("ix_field_value_text", "team_id", "target", "name", "text"),
        Index("ix_field_value_number", "team_id", "target", "name", "number"),
    )
    record_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(String(16))
    text: Mapped[str | None] = mapped_column(String(1000))
    number: Mapped[float | None] = mapped_column(Float)

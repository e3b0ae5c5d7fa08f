"""The portal's own declarative base (own metadata, so other packages' models never mix in)."""

from __future__ import annotations

import datetime

from advanced_alchemy.base import CommonTableAttributes, convention
from advanced_alchemy.mixins import AuditColumns, UUIDPrimaryKey
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase


class Base(CommonTableAttributes, DeclarativeBase, AsyncAttrs):
    __abstract__ = True
    metadata = MetaData(naming_convention=convention)
    type_annotation_map = {datetime.datetime: DateTimeUTC(timezone=True)}  # noqa: RUF012


class Entity(UUIDPrimaryKey, AuditColumns, Base):
    """A row with a UUID id and created_at/updated_at."""

    __abstract__ = True


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)

"""Defining a team's fields (admins; each change a new version), checking a record's values
against the current version, indexing them, and the ``?field.<name>=`` filters."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request
from sqlalchemy import ColumnElement, delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_scoped_session

from labportal.domain.accounts.models import User
from labportal.domain.fields.models import FieldSchema, FieldValue
from labportal.domain.fields.schemas import FieldDef
from labportal.domain.fields.validator import Values, validate
from labportal.domain.teams.services import TeamService
from labportal.errors import NotFound, Problem, Unprocessable

PREFIX = "field."
RANGED = ("int", "number", "date")
"""The field types a filter may bound with ``.min`` / ``.max``."""


class InvalidFields(Unprocessable):
    code = "invalid_fields"


class BadFilter(Problem, ValueError):
    """A list's filter the query string got wrong (400): a page shows the detail beside
    its form, the API answers it as a problem."""

    code = "validation_failed"


@dataclass(frozen=True)
class Definition:
    version: int
    fields: list[FieldDef]
    created_at: datetime.datetime | None = None

    def by_name(self) -> dict[str, FieldDef]:
        return {f.name: f for f in self.fields}


def _definition(row: FieldSchema | None) -> Definition:
    if row is None:
        return Definition(0, [])
    return Definition(row.version, msgspec.convert(row.fields, list[FieldDef]), row.created_at)


@dataclass
class FieldFilter:
    name: str
    equals: str | None = None
    low: str | None = None
    high: str | None = None


class FieldService:
    def __init__(self, session: AsyncSession | async_scoped_session[AsyncSession]) -> None:
        self.db = session

    async def _row(
        self, team_id: uuid.UUID, target: str, version: int | None
    ) -> FieldSchema | None:
        stmt = select(FieldSchema).where(
            FieldSchema.team_id == team_id, FieldSchema.target == target
        )
        if version is not None:
            stmt = stmt.where(FieldSchema.version == version)
        return await self.db.scalar(stmt.order_by(FieldSchema.version.desc()).limit(1))

    async def current(self, team_id: uuid.UUID, target: str) -> Definition:
        return _definition(await self._row(team_id, target, None))

    async def read(
        self, team_id: uuid.UUID, user: User, target: str, version: int | None = None
    ) -> Definition:
        await TeamService(session=self.db).membership(team_id, user)
        row = await self._row(team_id, target, version)
        if version is not None and row is None:
            raise NotFound(f"no version {version} of the team's {target} fields")
        return _definition(row)

    async def define(
        self, team_id: uuid.UUID, user: User, target: str, fields: list[FieldDef]
    ) -> Definition:
        """A new version (admin); records keep the version they were checked against."""
        await TeamService(session=self.db).require(team_id, user, "admin")
        latest = await self.current(team_id, target)
        row = FieldSchema(
            team_id=team_id,
            target=target,
            version=latest.version + 1,
            fields=msgspec.to_builtins(fields),
            created_by_id=user.id,
        )
        self.db.add(row)
        await self.db.flush()
        return _definition(row)

    async def check(
        self, team_id: uuid.UUID, target: str, values: Values, old: Values | None = None
    ) -> tuple[Values, int | None]:
        """The record's new values (``old`` updated by ``values``; a ``null`` removes a field)
        checked against the current version, and that version (None: no definition and no
        values). 422 ``invalid_fields`` says which field is wrong."""
        merged = {**(old or {}), **values}
        merged = {k: v for k, v in merged.items() if v is not None}
        definition = await self.current(team_id, target)
        if definition.version == 0:
            if merged:
                raise InvalidFields(f"the team defines no {target} fields yet")
            return {}, None
        try:
            return validate(definition.fields, merged), definition.version
        except msgspec.ValidationError as exc:
            raise InvalidFields(f"fields: {exc}") from None

    async def index(
        self, team_id: uuid.UUID, target: str, record_id: uuid.UUID, values: Values
    ) -> None:
        await self.db.execute(delete(FieldValue).where(FieldValue.record_id == record_id))
        for name, value in values.items():
            number = (
                float(value)
                if isinstance(value, int | float) and not isinstance(value, bool)
                else None
            )
            text = None if number is not None else _text(value)
            self.db.add(
                FieldValue(
                    record_id=record_id,
                    name=name,
                    team_id=team_id,
                    target=target,
                    text=text,
                    number=number,
                )
            )

    async def conditions(
        self, team_id: uuid.UUID, target: str, record_id: Any, filters: list[FieldFilter]
    ) -> list[ColumnElement[bool]]:
        """EXISTS conditions on the index for each filter, typed by the current definition."""
        if not filters:
            return []
        known = (await self.current(team_id, target)).by_name()
        out: list[ColumnElement[bool]] = []
        for f in filters:
            field = known.get(f.name)
            if field is None:
                raise BadFilter(f"the team has no {target} field {f.name!r}")
            column = FieldValue.number if field.type in ("int", "number") else FieldValue.text
            where: list[ColumnElement[bool]] = [
                FieldValue.record_id == record_id,
                FieldValue.team_id == team_id,
                FieldValue.name == f.name,
            ]
            if f.equals is not None:
                where.append(column == _typed(field, f.equals))
            if (f.low is not None or f.high is not None) and field.type not in RANGED:
                raise BadFilter(f"field {f.name} is a {field.type}: no ranges")
            low = None if f.low is None else _typed(field, f.low)
            high = None if f.high is None else _typed(field, f.high)
            if low is not None and high is not None and low > high:
                raise BadFilter(f"field.{f.name}.min ({f.low}) is above its max ({f.high})")
            if low is not None:
                where.append(column >= low)
            if high is not None:
                where.append(column <= high)
            out.append(exists().where(*where))
        return out


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _typed(field: FieldDef, raw: str) -> Any:
    """A query-string value as the field's type (400 when it is not one)."""
    try:
        if field.type in ("int", "number"):
            return float(raw)
        if field.type == "date":
            return datetime.date.fromisoformat(raw).isoformat()
        if field.type == "bool":
            if raw not in ("true", "false"):
                raise ValueError
            return raw
    except ValueError:
        raise BadFilter(f"field.{field.name} must be a {field.type}, not {raw[:40]!r}") from None
    return raw


def provide_field_filters(request: Request[Any, Any, Any]) -> list[FieldFilter]:
    """The ``field.*`` filters of a list's query string (names are the team's own, so they
    are not parameters of the route: see the list's description)."""
    return parse_filters(dict(request.query_params))


def parse_filters(query: Mapping[str, str]) -> list[FieldFilter]:
    """``field.stain=HE``, ``field.thickness.min=3``, ``field.thickness.max=5``."""
    found: dict[str, FieldFilter] = {}
    for key, value in query.items():
        if not key.startswith(PREFIX):
            continue
        name, _, bound = key[len(PREFIX) :].partition(".")
        if bound not in ("", "min", "max") or not name or len(value) > 1000:
            raise BadFilter(
                f"bad field filter {key!r}: field.NAME, field.NAME.min or field.NAME.max"
            )
        f = found.setdefault(name, FieldFilter(name))
        if bound == "min":
            f.low = value
        elif bound == "max":
            f.high = value
        else:
            f.equals = value
    return list(found.values())

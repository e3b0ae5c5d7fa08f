"""/api/teams/{team_id}/fields/{target}: the team's field definitions (admins change them)."""

from __future__ import annotations

import uuid

from litestar import Controller, get, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK
from sqlalchemy.ext.asyncio import AsyncSession

from labportal.domain.fields.schemas import FieldSchemaIn, FieldSchemaOut, Target
from labportal.domain.fields.services import Definition, FieldService
from labportal.security.principal import Principal

READ, WRITE = {"scope": "cases:read"}, {"scope": "teams:write"}


def provide_fields(db_session: NamedDependency[AsyncSession]) -> FieldService:
    return FieldService(db_session)


def _out(team_id: uuid.UUID, target: Target, d: Definition) -> FieldSchemaOut:
    return FieldSchemaOut(
        team_id=team_id,
        target=target,
        version=d.version,
        fields=d.fields,
        created_at=d.created_at,
    )


class TeamFieldsController(Controller):
    path = "/api/teams/{team_id:uuid}/fields/{target:str}"
    tags = ["fields"]
    dependencies = {"fields": Provide(provide_fields, sync_to_thread=False)}

    @get(
        "/",
        opt=READ,
        summary="The current definition of the fields a team's cases or materials carry",
    )
    async def current(
        self,
        team_id: FromPath[uuid.UUID],
        target: FromPath[Target],
        principal: NamedDependency[Principal],
        fields: NamedDependency[FieldService],
    ) -> FieldSchemaOut:
        return _out(team_id, target, await fields.read(team_id, principal.user, target))

    @get("/versions/{version:int}", opt=READ, summary="One earlier version of the definition")
    async def version(
        self,
        team_id: FromPath[uuid.UUID],
        target: FromPath[Target],
        version: FromPath[int],
        principal: NamedDependency[Principal],
        fields: NamedDependency[FieldService],
    ) -> FieldSchemaOut:
        return _out(team_id, target, await fields.read(team_id, principal.user, target, version))

    @put(
        "/",
        opt=WRITE,
        status_code=HTTP_200_OK,
        summary="Define the fields (admin): a new version; existing records keep theirs",
    )
    async def define(
        self,
        team_id: FromPath[uuid.UUID],
        target: FromPath[Target],
        data: JSONBody[FieldSchemaIn],
        principal: NamedDependency[Principal],
        fields: NamedDependency[FieldService],
    ) -> FieldSchemaOut:
        return _out(
            team_id, target, await fields.define(team_id, principal.user, target, data.fields)
        )

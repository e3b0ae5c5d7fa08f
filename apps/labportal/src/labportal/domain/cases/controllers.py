"""/api/teams/{team_id}/cases (list with filters, create) and /api/cases/{case_id}."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK
from sqlalchemy.ext.asyncio import AsyncSession

from labportal.cluster import Cluster
from labportal.domain import validation
from labportal.domain.cases.convert import case_out, event_out
from labportal.domain.cases.schemas import (
    CaseCreateIn,
    CaseEventOut,
    CaseOut,
    CasePage,
    CaseUpdateIn,
    TransitionIn,
)
from labportal.domain.cases.services import CaseFilters, CaseService
from labportal.domain.cases.workflow import Status
from labportal.domain.fields.services import FieldFilter
from labportal.domain.materials.controllers import DEPENDENCIES as MATERIALS
from labportal.domain.materials.controllers import FIELD_FILTERS_DOC, SEARCH
from labportal.domain.materials.search import SlideFilters
from labportal.domain.materials.services import MaterialService
from labportal.errors import Problem
from labportal.security.principal import Principal

READ, WRITE = {"scope": "cases:read"}, {"scope": "cases:write"}


def provide_cases(db_session: NamedDependency[AsyncSession]) -> CaseService:
    return CaseService(session=db_session)


def _filters(
    principal: NamedDependency[Principal],
    status: str | None,
    assignee: str | None,
    tag: str | None,
    q: str | None,
) -> CaseFilters:
    filters = CaseFilters(status=status)
    if assignee == "me":
        filters.assignee = principal.user.id
    elif assignee == "none":
        filters.unassigned = True
    elif assignee:
        try:
            filters.assignee = uuid.UUID(assignee)
        except ValueError:
            raise Problem(
                "assignee must be a user id, 'me' or 'none'", code="validation_failed"
            ) from None
    try:
        filters.tag = validation.line(tag, "tag") if tag else None
        filters.text = validation.text(q, "q").strip() or None if q else None
    except ValueError as exc:
        raise Problem(str(exc), code="validation_failed") from None
    return filters


class TeamCasesController(Controller):
    path = "/api/teams/{team_id:uuid}/cases"
    tags = ["cases"]
    dependencies = {"cases": Provide(provide_cases, sync_to_thread=False)}

    @get(
        "/",
        opt=READ,
        summary="A team's cases, filtered and paginated (newest change first)",
        description=FIELD_FILTERS_DOC
        + " For cases, the scanner filters keep those with at least one slide that matches.",
        dependencies=SEARCH,
    )
    async def list_cases(
        self,
        team_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        cases: NamedDependency[CaseService],
        field_filters: NamedDependency[list[FieldFilter]],
        slide_filters: NamedDependency[SlideFilters],
        status: FromQuery[Status | None] = None,
        assignee: Annotated[
            str | None, QueryParameter(max_length=36, description="a user id, 'me' or 'none'")
        ] = None,
        tag: Annotated[str | None, QueryParameter(max_length=50)] = None,
        q: Annotated[
            str | None, QueryParameter(max_length=200, description="text in title or description")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        offset: Annotated[int, QueryParameter(ge=0, le=1_000_000)] = 0,
    ) -> CasePage:
        filters = _filters(principal, status, assignee, tag, q)
        filters.fields, filters.slide = field_filters, slide_filters
        rows, total = await cases.list_cases(team_id, principal.user, filters, limit, offset)
        return CasePage(items=[case_out(c) for c in rows], total=total, limit=limit, offset=offset)

    @post("/", opt=WRITE, summary="Open a case (member)")
    async def create_case(
        self,
        team_id: FromPath[uuid.UUID],
        data: JSONBody[CaseCreateIn],
        principal: NamedDependency[Principal],
        cases: NamedDependency[CaseService],
    ) -> CaseOut:
        return case_out(await cases.create_case(team_id, principal.user, data))


class CaseController(Controller):
    path = "/api/cases/{case_id:uuid}"
    tags = ["cases"]
    dependencies = {"cases": Provide(provide_cases, sync_to_thread=False)}

    @get("/", opt=READ, summary="One case")
    async def get_case(
        self,
        case_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        cases: NamedDependency[CaseService],
    ) -> CaseOut:
        case, _ = await cases.get_case(case_id, principal.user)
        return case_out(case)

    @patch("/", opt=WRITE, summary="Edit title, description, tags, assignee or fields (member)")
    async def update_case(
        self,
        case_id: FromPath[uuid.UUID],
        data: JSONBody[CaseUpdateIn],
        principal: NamedDependency[Principal],
        cases: NamedDependency[CaseService],
    ) -> CaseOut:
        return case_out(await cases.update_case(case_id, principal.user, data))

    @post(
        "/status",
        opt=WRITE,
        status_code=HTTP_200_OK,
        summary="Move the case along the workflow (sign-out and reopen need admin)",
    )
    async def transition(
        self,
        case_id: FromPath[uuid.UUID],
        data: JSONBody[TransitionIn],
        principal: NamedDependency[Principal],
        cases: NamedDependency[CaseService],
    ) -> CaseOut:
        return case_out(await cases.transition(case_id, principal.user, data.status, data.note))

    @delete(
        "/",
        opt=WRITE,
        summary="Delete a case (admin) and its materials; unused blobs leave the cluster",
        dependencies=MATERIALS,
    )
    async def delete_case(
        self,
        case_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        materials: NamedDependency[MaterialService],
        cluster: NamedDependency[Cluster],
    ) -> None:
        await materials.delete_case(case_id, principal.user, cluster)

    @get("/events", opt=READ, summary="The audit trail: who changed what, and when")
    async def events(
        self,
        case_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        cases: NamedDependency[CaseService],
    ) -> list[CaseEventOut]:
        return [event_out(e) for e in await cases.events(case_id, principal.user)]

"""Server-rendered pages: the main flows, each a thin view over the same services as the API.

Reads happen here; every change goes through the JSON API from ``static/portal.js``.
Pages need a browser session and redirect to /login otherwise.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from labportal.domain.annotations.classes import ClassService
from labportal.domain.cases import workflow
from labportal.domain.cases.controllers import _filters
from labportal.domain.cases.models import Case
from labportal.domain.cases.services import CaseService
from labportal.domain.discussion.services import CommentService
from labportal.domain.fields.services import (
    PREFIX,
    BadFilter,
    Definition,
    FieldService,
    parse_filters,
)
from labportal.domain.materials.models import Material
from labportal.domain.materials.schemas import slide_facts
from labportal.domain.materials.search import QUERY_KEYS, SlideFilters
from labportal.domain.materials.services import MaterialService, Search, status_of
from labportal.domain.teams.invitations import InvitationService, effective_status
from labportal.domain.teams.roles import at_least
from labportal.domain.teams.services import TeamService
from labportal.errors import Problem
from labportal.security.principal import Principal
from labportal.security.redirects import is_local_path
from labportal.settings import Settings

T = TypeVar("T")


def _safe_next(value: str | None) -> str:
    """Only same-origin relative paths: never redirect to another site after login."""
    return value if value and is_local_path(value) else "/"


def _login(request: Request[Any, Any, Any]) -> Redirect:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect(f"/login?{urlencode({'next': target})}")


def _definition_json(definition: Definition) -> dict[str, Any]:
    return {"version": definition.version, "fields": msgspec.to_builtins(definition.fields)}


def _page(name: str, viewer: Principal | None, status_code: int = 200, **context: Any) -> Template:
    csrf = viewer.session.csrf_token if viewer and viewer.session else ""
    user = viewer.user if viewer else None
    return Template(
        template_name=name,
        context={"user": user, "csrf": csrf, **context},
        status_code=status_code,
    )


class _ListPage:
    """A list page's state: the filled-in filters of its query string (``keys``, the team's
    fields and the scanner metadata; its links keep them), where it is in the list, and
    why a filter was refused (the page is shown again with the reason, 400)."""

    limit = 25

    def __init__(self, request: Request[Any, Any, Any], offset: int, *keys: str) -> None:
        self.params = {
            k: v
            for k, v in request.query_params.items()
            if v and (k in keys or k in QUERY_KEYS or k.startswith(PREFIX))
        }
        self.offset = max(0, min(offset, 1_000_000))
        self.error: str | None = None

    async def rows(
        self, search: Callable[[], Awaitable[tuple[list[T], int]]]
    ) -> tuple[list[T], int]:
        try:
            return await search()
        except BadFilter as exc:
            self.error = exc.detail
            return [], 0

    def query(self, **changes: Any) -> str:
        """``query(offset=25)``: the page's query string with some values changed."""
        return urlencode({k: v for k, v in {**self.params, **changes}.items() if v})

    def render(self, name: str, viewer: Principal, total: int, **context: Any) -> Template:
        return _page(
            name,
            viewer,
            status_code=400 if self.error else 200,
            total=total,
            limit=self.limit,
            offset=self.offset,
            filters=self.params,
            error=self.error,
            query=self.query,
            **context,
        )


class PageController(Controller):
    include_in_schema = False

    @get("/")
    async def home(self, viewer: NamedDependency[Principal | None]) -> Redirect:
        return Redirect("/teams" if viewer else "/login")

    @get("/login")
    async def login(
        self, viewer: NamedDependency[Principal | None], next: FromQuery[str | None] = None
    ) -> Template:
        return _page("login.html", viewer, next=_safe_next(next))

    @get("/register")
    async def register(
        self, viewer: NamedDependency[Principal | None], next: FromQuery[str | None] = None
    ) -> Template:
        return _page("register.html", viewer, next=_safe_next(next))

    @get("/teams")
    async def teams(
        self,
        request: Request[Any, Any, Any],
        viewer: NamedDependency[Principal | None],
        db_session: NamedDependency[AsyncSession],
    ) -> Template | Redirect:
        if viewer is None:
            return _login(request)
        teams = await TeamService(session=db_session).teams_of(viewer.user)
        return _page("teams.html", viewer, teams=teams)

    @get("/teams/{team_id:uuid}")
    async def team(
        self,
        request: Request[Any, Any, Any],
        team_id: FromPath[uuid.UUID],
        viewer: NamedDependency[Principal | None],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
    ) -> Template | Redirect:
        if viewer is None:
            return _login(request)
        service = TeamService(session=db_session)
        team, me = await service.get_team(team_id, viewer.user)
        is_admin = at_least(me.role, "admin")
        invitations, definitions, classes = [], {}, []
        if is_admin:
            rows = await InvitationService(session=db_session).list_for_team(team_id, viewer.user)
            invitations = [(i, effective_status(i)) for i in rows]
            fields = FieldService(db_session)
            definitions = {t: await fields.current(team_id, t) for t in ("case", "material")}
            classes = [
                {"name": c.name, "color": c.color}
                for c in await ClassService(db_session).of_team(team_id)
            ]
        return _page(
            "team.html",
            viewer,
            team=team,
            me=me,
            is_admin=is_admin,
            members=await service.members(team_id, viewer.user),
            invitations=invitations,
            definitions={t: _definition_json(d) for t, d in definitions.items()},
            annotation_classes=classes,
            used=await MaterialService(session=db_session).team_usage(team_id),
            quota=settings.team_quota_bytes,
        )

    @get("/invitations/{token:str}")
    async def invitation(
        self,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        viewer: NamedDependency[Principal | None],
        db_session: NamedDependency[AsyncSession],
    ) -> Template | Redirect:
        if viewer is None:
            return _login(request)
        invitation = await InvitationService(session=db_session).by_secret(token[:128])
        return _page(
            "invitation.html",
            viewer,
            invitation=invitation,
            status=effective_status(invitation),
            token=token,
        )

    @get("/teams/{team_id:uuid}/cases")
    async def cases(
        self,
        request: Request[Any, Any, Any],
        team_id: FromPath[uuid.UUID],
        viewer: NamedDependency[Principal | None],
        db_session: NamedDependency[AsyncSession],
        status: FromQuery[str | None] = None,
        assignee: FromQuery[str | None] = None,
        tag: FromQuery[str | None] = None,
        q: FromQuery[str | None] = None,
        offset: FromQuery[int] = 0,
    ) -> Template | Redirect:
        if viewer is None:
            return _login(request)
        if status and status not in workflow.STATUSES:
            raise Problem(f"status must be one of {', '.join(workflow.STATUSES)}")
        team, me = await TeamService(session=db_session).get_team(team_id, viewer.user)
        filters = _filters(viewer, status or None, assignee or None, tag or None, q or None)
        page = _ListPage(request, offset, "status", "assignee", "tag", "q")
        materials = MaterialService(session=db_session)

        async def search() -> tuple[list[Case], int]:
            filters.fields = parse_filters(page.params)
            filters.slide = SlideFilters.from_query(page.params)
            return await CaseService(session=db_session).list_cases(
                team_id, viewer.user, filters, page.limit, page.offset
            )

        rows, total = await page.rows(search)
        return page.render(
            "cases.html",
            viewer,
            total,
            team=team,
            cases=rows,
            slides=await materials.stored_in_cases([c.id for c in rows]),
            statuses=workflow.STATUSES,
            can_write=at_least(me.role, "member"),
            case_fields=await FieldService(db_session).current(team_id, "case"),
            objectives=await materials.objectives(team_id),
        )

    @get("/teams/{team_id:uuid}/materials")
    async def materials(
        self,
        request: Request[Any, Any, Any],
        team_id: FromPath[uuid.UUID],
        viewer: NamedDependency[Principal | None],
        db_session: NamedDependency[AsyncSession],
        offset: FromQuery[int] = 0,
    ) -> Template | Redirect:
        """The team's slides searched by their fields and scanner metadata, newest first."""
        if viewer is None:
            return _login(request)
        team, _ = await TeamService(session=db_session).get_team(team_id, viewer.user)
        page = _ListPage(request, offset)
        materials = MaterialService(session=db_session)

        async def search() -> tuple[list[Material], int]:
            found = Search(parse_filters(page.params), SlideFilters.from_query(page.params))
            return await materials.list_for_team(
                team_id, viewer.user, found, page.limit, page.offset
            )

        rows, total = await page.rows(search)
        return page.render(
            "materials.html",
            viewer,
            total,
            team=team,
            materials=rows,
            case_titles=await CaseService(session=db_session).titles([m.case_id for m in rows]),
            material_fields=await FieldService(db_session).current(team_id, "material"),
            objectives=await materials.objectives(team_id),
        )

    @get("/cases/{case_id:uuid}")
    async def case(
        self,
        request: Request[Any, Any, Any],
        case_id: FromPath[uuid.UUID],
        viewer: NamedDependency[Principal | None],
        db_session: NamedDependency[AsyncSession],
    ) -> Template | Redirect:
        if viewer is None:
            return _login(request)
        cases = CaseService(session=db_session)
        case, me = await cases.get_case(case_id, viewer.user)
        comments = await CommentService(session=db_session).list_comments(case_id, viewer.user)
        threads = [
            {"root": c, "replies": [r for r in comments if r.parent_id == c.id]}
            for c in comments
            if c.parent_id is None
        ]
        members = await TeamService(session=db_session).members(case.team_id, viewer.user)
        materials = await MaterialService(session=db_session).list_for_case(case_id, viewer.user)
        return _page(
            "case.html",
            viewer,
            case=case,
            transitions=workflow.allowed(case.status),
            can_write=at_least(me.role, "member"),
            assignable=[m for m in members if at_least(m.role, "member")],
            threads=threads,
            materials=materials,
            facts={m.id: slide_facts(m.slide) for m in materials},
            material_names={m.id: m.name for m in materials},
            events=await cases.events(case_id, viewer.user),
            case_fields=await FieldService(db_session).current(case.team_id, "case"),
            material_fields=await FieldService(db_session).current(case.team_id, "material"),
        )

    @get("/materials/{material_id:uuid}")
    async def material(
        self,
        request: Request[Any, Any, Any],
        material_id: FromPath[uuid.UUID],
        viewer: NamedDependency[Principal | None],
        db_session: NamedDependency[AsyncSession],
    ) -> Template | Redirect:
        """Facts, status and replicas come from the API (they need the cluster)."""
        if viewer is None:
            return _login(request)
        access = await MaterialService(session=db_session).access(material_id, viewer.user)
        return _page(
            "material.html",
            viewer,
            material=access.material,
            facts=slide_facts(access.material.slide),
            case=access.case,
            can_write=access.can_write,
            local_status=status_of(access.material, None),
            material_fields=await FieldService(db_session).current(access.case.team_id, "material"),
        )

    @get("/materials/{material_id:uuid}/view")
    async def viewer_page(
        self,
        request: Request[Any, Any, Any],
        material_id: FromPath[uuid.UUID],
        viewer: NamedDependency[Principal | None],
        db_session: NamedDependency[AsyncSession],
    ) -> Template | Redirect:
        if viewer is None:
            return _login(request)
        materials = MaterialService(session=db_session)
        access = await materials.access(material_id, viewer.user)
        slides = [
            m for m in await materials.list_for_case(access.case.id, viewer.user) if m.blob_id
        ]
        at = next((i for i, m in enumerate(slides) if m.id == material_id), None)
        return _page(
            "viewer.html",
            viewer,
            material=access.material,
            case=access.case,
            can_write=access.can_write,
            slides=slides,
            previous=slides[at - 1] if at is not None and at > 0 else None,
            next=slides[at + 1] if at is not None and at + 1 < len(slides) else None,
        )


PAGE_CONTROLLERS: list[type] = [PageController]

"""Cases: creation, edits, the status workflow, listing with filters, the audit trail."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from msgspec import UNSET
from sqlalchemy import exists, func, or_, select

from labportal.db.base import utcnow
from labportal.domain.accounts.models import User
from labportal.domain.cases import workflow
from labportal.domain.cases.models import Case, CaseEvent, CaseTag
from labportal.domain.cases.schemas import CaseCreateIn, CaseUpdateIn
from labportal.domain.fields.services import FieldFilter, FieldService
from labportal.domain.materials.models import Material
from labportal.domain.materials.search import SlideFilters
from labportal.domain.teams.models import Membership
from labportal.domain.teams.roles import at_least
from labportal.domain.teams.services import TeamService
from labportal.errors import Conflict, Forbidden, NotFound, Unprocessable


def ensure_unlocked(case: Case, what: str = "changed") -> None:
    """409 ``locked`` for any write under a signed-out case (its record must stay as signed)."""
    if case.status in workflow.LOCKED:
        raise Conflict(
            f"the case is signed out: nothing in it can be {what}; an admin must reopen it first",
            code="locked",
        )


class CaseRepository(SQLAlchemyAsyncRepository[Case]):
    model_type = Case


@dataclass
class CaseFilters:
    status: str | None = None
    assignee: uuid.UUID | None = None
    unassigned: bool = False
    tag: str | None = None
    text: str | None = None
    fields: list[FieldFilter] = field(default_factory=list)
    slide: SlideFilters = field(default_factory=SlideFilters)
    """Cases with at least one material whose scanner metadata matches."""


class CaseService(SQLAlchemyAsyncRepositoryService[Case, CaseRepository]):
    repository_type = CaseRepository

    @property
    def teams(self) -> TeamService:
        return TeamService(session=self.repository.session)

    @property
    def fields(self) -> FieldService:
        return FieldService(self.repository.session)

    async def record(
        self, case: Case, actor: User, action: str, changes: dict[str, Any]
    ) -> CaseEvent:
        event = CaseEvent(case_id=case.id, actor_id=actor.id, action=action, changes=changes)
        self.repository.session.add(event)
        return event

    async def get_case(self, case_id: uuid.UUID, user: User) -> tuple[Case, Membership]:
        """A case of a team you are not in does not exist for you (404)."""
        case = await self.repository.get_one_or_none(id=case_id)
        if case is None:
            raise NotFound("no such case")
        try:
            member = await self.teams.membership(case.team_id, user)
        except NotFound:
            raise NotFound("no such case") from None
        return case, member

    async def writable(self, case_id: uuid.UUID, user: User) -> tuple[Case, Membership]:
        case, member = await self.get_case(case_id, user)
        if not at_least(member.role, "member"):
            raise Forbidden(f"a team {member.role} cannot change cases")
        return case, member

    async def _check_assignee(self, team_id: uuid.UUID, user_id: uuid.UUID | None) -> User | None:
        if user_id is None:
            return None
        member = await self.repository.session.scalar(
            select(Membership).where(Membership.team_id == team_id, Membership.user_id == user_id)
        )
        if member is None or not at_least(member.role, "member"):
            raise Unprocessable(
                "assignee_id must be a member of the case's team (viewers cannot be assigned)",
                code="invalid_assignee",
            )
        return member.user

    async def create_case(self, team_id: uuid.UUID, actor: User, data: CaseCreateIn) -> Case:
        await self.teams.require(team_id, actor, "member")
        assignee = await self._check_assignee(team_id, data.assignee_id)
        values, version = await self.fields.check(team_id, "case", data.fields)
        case = Case(
            team_id=team_id,
            title=data.title,
            description=data.description,
            status="open",
            assignee_id=data.assignee_id,
            created_by_id=actor.id,
            tag_rows=[CaseTag(tag=t) for t in data.tags],
            fields=values,
            fields_version=version,
        )
        case.assignee, case.created_by = assignee, actor
        case = await self.repository.add(case)
        await self.fields.index(team_id, "case", case.id, values)
        changes: dict[str, Any] = {"title": data.title, "status": "open", "tags": data.tags}
        if values:
            changes["fields"] = values
        if assignee is not None:
            changes["assignee"] = {"id": str(assignee.id), "display_name": assignee.display_name}
        await self.record(case, actor, "created", changes)
        return case

    async def update_case(self, case_id: uuid.UUID, actor: User, data: CaseUpdateIn) -> Case:
        case, _ = await self.writable(case_id, actor)
        ensure_unlocked(case, "edited")
        changes: dict[str, Any] = {}
        for name in ("title", "description"):
            new = getattr(data, name)
            if new is not UNSET and new != getattr(case, name):
                changes[name] = {"from": getattr(case, name), "to": new}
                setattr(case, name, new)
        if data.tags is not UNSET and data.tags != case.tags:
            changes["tags"] = {"from": case.tags, "to": data.tags}
            case.tag_rows = [CaseTag(case_id=case.id, tag=t) for t in data.tags]
        if data.assignee_id is not UNSET and data.assignee_id != case.assignee_id:
            assignee = await self._check_assignee(case.team_id, data.assignee_id)
            changes["assignee"] = {"from": _who(case.assignee), "to": _who(assignee)}
            case.assignee_id, case.assignee = data.assignee_id, assignee
        if data.fields is not UNSET:
            values, version = await self.fields.check(
                case.team_id, "case", data.fields, case.fields
            )
            if values != case.fields or version != case.fields_version:
                changes["fields"] = {"from": case.fields, "to": values}
                case.fields, case.fields_version = values, version
                await self.fields.index(case.team_id, "case", case.id, values)
        if changes:
            case.updated_at = utcnow()
            await self.record(case, actor, "updated", changes)
            await self.repository.session.flush()
        return case

    async def transition(self, case_id: uuid.UUID, actor: User, target: str, note: str) -> Case:
        case, member = await self.writable(case_id, actor)
        current = case.status
        if target not in workflow.allowed(current):
            allowed = ", ".join(workflow.allowed(current))
            raise Conflict(
                f"a case cannot go from {current} to {target}; from {current} it can go to: {allowed}",
                code="invalid_transition",
                allowed=list(workflow.allowed(current)),
            )
        if workflow.needs_admin(current, target) and not at_least(member.role, "admin"):
            raise Forbidden(f"moving a case from {current} to {target} needs the admin role")
        case.status, case.updated_at = target, utcnow()
        changes: dict[str, Any] = {"status": {"from": current, "to": target}}
        if note:
            changes["note"] = note
        await self.record(case, actor, "status_changed", changes)
        await self.repository.session.flush()
        return case

    async def delete_case(self, case_id: uuid.UUID, actor: User) -> None:
        case, member = await self.get_case(case_id, actor)
        if not at_least(member.role, "admin"):
            raise Forbidden(f"deleting a case needs the admin role; you are {member.role}")
        ensure_unlocked(case, "deleted")
        await self.repository.delete(case.id)

    async def list_cases(
        self, team_id: uuid.UUID, user: User, filters: CaseFilters, limit: int, offset: int
    ) -> tuple[list[Case], int]:
        await self.teams.membership(team_id, user)
        where: list[Any] = [Case.team_id == team_id]
        if filters.status:
            where.append(Case.status == filters.status)
        if filters.unassigned:
            where.append(Case.assignee_id.is_(None))
        elif filters.assignee is not None:
            where.append(Case.assignee_id == filters.assignee)
        if filters.tag:
            where.append(
                exists().where(CaseTag.case_id == Case.id, CaseTag.tag == filters.tag.lower())
            )
        if filters.text:
            where.append(
                or_(
                    Case.title.icontains(filters.text, autoescape=True),
                    Case.description.icontains(filters.text, autoescape=True),
                )
            )
        where += await self.fields.conditions(team_id, "case", Case.id, filters.fields)
        if filters.slide.any():
            where.append(exists().where(Material.case_id == Case.id, *filters.slide.conditions()))
        db = self.repository.session
        total = await db.scalar(select(func.count()).select_from(Case).where(*where)) or 0
        rows = await db.scalars(
            select(Case)
            .where(*where)
            .order_by(Case.updated_at.desc(), Case.id)
            .limit(limit)
            .offset(offset)
        )
        return list(rows.unique()), total

    async def titles(self, case_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
        """The titles of cases the caller already found through an access check (a list
        of slides links each to its case)."""
        if not case_ids:
            return {}
        rows = await self.repository.session.execute(
            select(Case.id, Case.title).where(Case.id.in_(case_ids))
        )
        return {case_id: title for case_id, title in rows}

    async def events(self, case_id: uuid.UUID, user: User) -> list[CaseEvent]:
        await self.get_case(case_id, user)
        rows = await self.repository.session.scalars(
            select(CaseEvent)
            .where(CaseEvent.case_id == case_id)
            .order_by(CaseEvent.created_at, CaseEvent.id)
        )
        return list(rows)


def _who(user: User | None) -> dict[str, str] | None:
    return None if user is None else {"id": str(user.id), "display_name": user.display_name}

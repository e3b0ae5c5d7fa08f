"""A team's annotation classes: the list (admins replace it), and the check annotations pass."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_scoped_session

from labportal.domain.accounts.models import User
from labportal.domain.annotations.models import AnnotationClass
from labportal.domain.annotations.schemas import AnnotationClassIn
from labportal.domain.teams.services import TeamService
from labportal.errors import Unprocessable


class InvalidClass(Unprocessable):
    code = "invalid_class"


class ClassService:
    def __init__(self, session: AsyncSession | async_scoped_session[AsyncSession]) -> None:
        self.db = session

    async def of_team(self, team_id: uuid.UUID) -> list[AnnotationClass]:
        rows = await self.db.scalars(
            select(AnnotationClass)
            .where(AnnotationClass.team_id == team_id)
            .order_by(AnnotationClass.position, AnnotationClass.name)
        )
        return list(rows)

    async def read(self, team_id: uuid.UUID, user: User) -> list[AnnotationClass]:
        await TeamService(session=self.db).membership(team_id, user)
        return await self.of_team(team_id)

    async def replace(
        self, team_id: uuid.UUID, user: User, classes: list[AnnotationClassIn]
    ) -> list[AnnotationClass]:
        """The team's new list (admin). Annotations keep the class they were drawn with."""
        await TeamService(session=self.db).require(team_id, user, "admin")
        await self.db.execute(delete(AnnotationClass).where(AnnotationClass.team_id == team_id))
        rows = [
            AnnotationClass(team_id=team_id, name=c.name, color=c.color, position=i)
            for i, c in enumerate(classes)
        ]
        self.db.add_all(rows)
        await self.db.flush()
        return rows

    async def colour_of(self, team_id: uuid.UUID, name: str | None) -> str | None:
        """The class's colour; 422 ``invalid_class`` when the team has a list and ``name``
        is not on it (or is missing), or has none and a class is given."""
        classes = {c.name: c.color for c in await self.of_team(team_id)}
        if not classes:
            if name is not None:
                raise InvalidClass("the team has no annotation classes: leave class out")
            return None
        if name not in classes:
            raise InvalidClass(
                f"class must be one of the team's classes: {', '.join(sorted(classes))}",
                allowed=sorted(classes),
            )
        return classes[name]

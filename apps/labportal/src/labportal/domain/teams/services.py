"""Teams and memberships: who may see and change what."""

from __future__ import annotations

import uuid

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from msgspec import UNSET
from sqlalchemy import func, select

from labportal.domain.accounts.models import User
from labportal.domain.teams.models import Membership, Team
from labportal.domain.teams.roles import at_least, may_assign, may_manage
from labportal.domain.teams.schemas import TeamCreateIn, TeamUpdateIn
from labportal.errors import Conflict, Forbidden, NotFound


class TeamRepository(SQLAlchemyAsyncRepository[Team]):
    model_type = Team


class TeamService(SQLAlchemyAsyncRepositoryService[Team, TeamRepository]):
    repository_type = TeamRepository

    @property
    def db(self):  # type: ignore[no-untyped-def]
        return self.repository.session

    async def membership(self, team_id: uuid.UUID, user: User) -> Membership:
        """The caller's membership; a team you are not in does not exist for you (404)."""
        member = await self.db.scalar(
            select(Membership).where(Membership.team_id == team_id, Membership.user_id == user.id)
        )
        if member is None:
            raise NotFound("no such team")
        return member

    async def require(self, team_id: uuid.UUID, user: User, minimum: str) -> Membership:
        member = await self.membership(team_id, user)
        if not at_least(member.role, minimum):
            raise Forbidden(f"this needs the {minimum} role in the team; you are {member.role}")
        return member

    async def create_team(self, user: User, data: TeamCreateIn) -> tuple[Team, Membership]:
        team = await self.repository.add(Team(name=data.name, description=data.description))
        member = Membership(team_id=team.id, user_id=user.id, role="owner")
        self.db.add(member)
        await self.db.flush()
        return team, member

    async def teams_of(self, user: User) -> list[tuple[Team, str]]:
        rows = await self.db.execute(
            select(Team, Membership.role)
            .join(Membership, Membership.team_id == Team.id)
            .where(Membership.user_id == user.id)
            .order_by(func.lower(Team.name), Team.id)
        )
        return [(team, role) for team, role in rows]

    async def get_team(self, team_id: uuid.UUID, user: User) -> tuple[Team, Membership]:
        member = await self.membership(team_id, user)
        return await self.repository.get(team_id), member

    async def update_team(
        self, team_id: uuid.UUID, user: User, data: TeamUpdateIn
    ) -> tuple[Team, Membership]:
        member = await self.require(team_id, user, "admin")
        team = await self.repository.get(team_id)
        if data.name is not UNSET:
            team.name = data.name
        if data.description is not UNSET:
            team.description = data.description
        if data.label_min_role is not UNSET:
            team.label_min_role = data.label_min_role
        await self.db.flush()
        return team, member

    async def delete_team(self, team_id: uuid.UUID, user: User) -> None:
        await self.require(team_id, user, "owner")
        await self.repository.delete(team_id)

    async def members(self, team_id: uuid.UUID, user: User) -> list[Membership]:
        await self.membership(team_id, user)
        rows = await self.db.scalars(
            select(Membership)
            .join(User, User.id == Membership.user_id)
            .where(Membership.team_id == team_id)
            .order_by(func.lower(User.display_name), User.id)
        )
        return list(rows)

    async def _target(self, team_id: uuid.UUID, user_id: uuid.UUID) -> Membership:
        target = await self.db.scalar(
            select(Membership).where(Membership.team_id == team_id, Membership.user_id == user_id)
        )
        if target is None:
            raise NotFound("no such member in this team")
        return target

    async def change_role(
        self, team_id: uuid.UUID, actor: User, user_id: uuid.UUID, role: str
    ) -> Membership:
        me = await self.require(team_id, actor, "admin")
        target = await self._target(team_id, user_id)
        if target.role == "owner":
            raise Conflict("the owner's role changes only by transferring ownership")
        if not may_manage(me.role, target.role) or not may_assign(me.role, role):
            raise Forbidden(f"a team {me.role} cannot make a {target.role} a {role}")
        target.role = role
        await self.db.flush()
        return target

    async def remove_member(self, team_id: uuid.UUID, actor: User, user_id: uuid.UUID) -> None:
        if user_id == actor.id:
            return await self.leave(team_id, actor)
        me = await self.require(team_id, actor, "admin")
        target = await self._target(team_id, user_id)
        if target.role == "owner":
            raise Conflict("the owner cannot be removed; transfer ownership first")
        if not may_manage(me.role, target.role):
            raise Forbidden(f"a team {me.role} cannot remove a {target.role}")
        await self.db.delete(target)
        return None

    async def leave(self, team_id: uuid.UUID, actor: User) -> None:
        me = await self.membership(team_id, actor)
        if me.role == "owner":
            raise Conflict("the owner cannot leave; transfer ownership first")
        await self.db.delete(me)

    async def transfer(self, team_id: uuid.UUID, actor: User, user_id: uuid.UUID) -> Membership:
        me = await self.require(team_id, actor, "owner")
        if user_id == actor.id:
            raise Conflict("you already own this team")
        target = await self._target(team_id, user_id)
        target.role, me.role = "owner", "admin"
        await self.db.flush()
        return target

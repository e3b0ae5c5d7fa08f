"""Invitation links: created by admins, accepted or declined by the invitee, revocable.

A link is answered once: the answer is a conditional UPDATE (``status = 'pending'``), so of
concurrent answers exactly one finds the row pending. A link speaks for its creator, so it
stops working when the creator may no longer hand out its role in the team."""

from __future__ import annotations

import datetime
import uuid

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import select, update

from labportal.db.base import utcnow
from labportal.domain.accounts.models import User
from labportal.domain.teams.models import Invitation, Membership
from labportal.domain.teams.roles import at_least, may_assign
from labportal.domain.teams.schemas import InvitationCreateIn
from labportal.domain.teams.services import TeamService
from labportal.errors import Conflict, Forbidden, Gone, NotFound
from labportal.security.secrets import digest, new_secret


class InvitationRepository(SQLAlchemyAsyncRepository[Invitation]):
    model_type = Invitation


def effective_status(invitation: Invitation, now: datetime.datetime | None = None) -> str:
    if invitation.status == "pending" and invitation.expires_at <= (now or utcnow()):
        return "expired"
    return invitation.status


class InvitationService(SQLAlchemyAsyncRepositoryService[Invitation, InvitationRepository]):
    repository_type = InvitationRepository

    @property
    def teams(self) -> TeamService:
        return TeamService(session=self.repository.session)

    async def create_invitation(
        self, team_id: uuid.UUID, actor: User, data: InvitationCreateIn, default_ttl_hours: int
    ) -> tuple[str, Invitation]:
        me = await self.teams.require(team_id, actor, "admin")
        if not may_assign(me.role, data.role):
            raise Forbidden(f"a team {me.role} cannot invite someone as {data.role}")
        secret = new_secret()
        hours = data.expires_in_hours or default_ttl_hours
        invitation = Invitation(
            team_id=team_id,
            role=data.role,
            email=data.email,
            token_hash=digest(secret),
            created_by_id=actor.id,
            expires_at=utcnow() + datetime.timedelta(hours=hours),
            status="pending",
        )
        invitation = await self.repository.add(invitation)
        await self.repository.session.refresh(invitation, ["team"])
        return secret, invitation

    async def list_for_team(self, team_id: uuid.UUID, actor: User) -> list[Invitation]:
        await self.teams.require(team_id, actor, "admin")
        rows = await self.repository.session.scalars(
            select(Invitation)
            .where(Invitation.team_id == team_id)
            .order_by(Invitation.created_at.desc(), Invitation.id)
        )
        return list(rows)

    async def revoke(self, team_id: uuid.UUID, actor: User, invitation_id: uuid.UUID) -> Invitation:
        await self.teams.require(team_id, actor, "admin")
        invitation = await self.repository.get_one_or_none(id=invitation_id, team_id=team_id)
        if invitation is None:
            raise NotFound("no such invitation")
        if invitation.status != "pending":
            raise Conflict(f"the invitation is already {invitation.status}")
        invitation.status = "revoked"
        invitation.responded_by_id, invitation.responded_at = actor.id, utcnow()
        await self.repository.session.flush()
        return invitation

    async def by_secret(self, secret: str) -> Invitation:
        invitation = await self.repository.get_one_or_none(token_hash=digest(secret))
        if invitation is None:
            raise NotFound("no such invitation")
        return invitation

    async def _answerable(self, secret: str, user: User) -> Invitation:
        invitation = await self.by_secret(secret)
        status = effective_status(invitation)
        if status == "expired":
            raise Gone("the invitation has expired; ask for a new one", code="invitation_expired")
        if status != "pending":
            raise Conflict(f"the invitation was {status}", code=f"invitation_{status}")
        if invitation.email is not None and invitation.email != user.email:
            raise Forbidden("this invitation is for another e-mail address")
        return invitation

    async def _creator_may_still_invite(self, invitation: Invitation) -> None:
        creator = None
        if invitation.created_by_id is not None:
            creator = await self.repository.session.scalar(
                select(Membership).where(
                    Membership.team_id == invitation.team_id,
                    Membership.user_id == invitation.created_by_id,
                )
            )
        if (
            creator is None
            or not at_least(creator.role, "admin")
            or not may_assign(creator.role, invitation.role)
        ):
            raise Gone(
                "this invitation is no longer valid: its creator can no longer invite to the "
                "team; ask a team admin for a new link",
                code="invitation_invalid",
            )

    async def _claim(self, invitation: Invitation, user: User, status: str) -> None:
        """Answer the invitation if it is still pending; losing a race is a 409."""
        db = self.repository.session
        result = await db.execute(
            update(Invitation)
            .where(Invitation.id == invitation.id, Invitation.status == "pending")
            .values(status=status, responded_by_id=user.id, responded_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        await db.refresh(invitation)  # the row as it is now (ours, or the winner's answer)
        if result.rowcount != 1:  # type: ignore[attr-defined]
            now = effective_status(invitation)
            raise Conflict(f"the invitation was {now}", code=f"invitation_{now}")

    async def accept(self, secret: str, user: User) -> Membership:
        invitation = await self._answerable(secret, user)
        await self._creator_may_still_invite(invitation)
        existing = await self.repository.session.scalar(
            select(Membership).where(
                Membership.team_id == invitation.team_id, Membership.user_id == user.id
            )
        )
        if existing is not None:
            raise Conflict("you are already a member of this team", code="already_member")
        await self._claim(invitation, user, "accepted")
        member = Membership(team_id=invitation.team_id, user_id=user.id, role=invitation.role)
        self.repository.session.add(member)
        await self.repository.session.flush()
        await self.repository.session.refresh(member, ["user"])
        return member

    async def decline(self, secret: str, user: User) -> Invitation:
        invitation = await self._answerable(secret, user)
        await self._claim(invitation, user, "declined")
        return invitation

"""/api/teams (teams, members, invitations) and /api/invitations/{token}."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, delete, get, patch, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, PathParameter
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT
from sqlalchemy.ext.asyncio import AsyncSession

from labportal.cluster import Cluster
from labportal.domain.materials.controllers import DEPENDENCIES as MATERIALS
from labportal.domain.materials.lifecycle import (
    ArchiveSummary,
    apply_team_lifecycle,
    archive_summary,
)
from labportal.domain.materials.services import MaterialService
from labportal.domain.teams.convert import invitation_out, member_out, team_out
from labportal.domain.teams.invitations import InvitationService
from labportal.domain.teams.schemas import (
    InvitationCreatedOut,
    InvitationCreateIn,
    InvitationOut,
    MemberOut,
    RoleIn,
    TeamCreateIn,
    TeamLifecycleIn,
    TeamOut,
    TeamUpdateIn,
    TransferIn,
)
from labportal.domain.teams.services import TeamService
from labportal.security.origin import same_origin
from labportal.security.principal import Principal
from labportal.settings import Settings

READ, WRITE = {"scope": "teams:read"}, {"scope": "teams:write"}
InvitationToken = Annotated[str, PathParameter(min_length=1, max_length=128)]


def provide_teams(db_session: NamedDependency[AsyncSession]) -> TeamService:
    return TeamService(session=db_session)


def provide_invitations(db_session: NamedDependency[AsyncSession]) -> InvitationService:
    return InvitationService(session=db_session)


def invitation_url(settings: NamedDependency[Settings], secret: str) -> str:
    """From the settings only: a request's Host header could send the link elsewhere."""
    return f"{settings.public_url}/invitations/{secret}"


class TeamController(Controller):
    path = "/api/teams"
    tags = ["teams"]
    dependencies = {
        "teams": Provide(provide_teams, sync_to_thread=False),
        "invitations": Provide(provide_invitations, sync_to_thread=False),
    }

    @get("/", opt=READ, summary="Teams I belong to")
    async def list_teams(
        self, principal: NamedDependency[Principal], teams: NamedDependency[TeamService]
    ) -> list[TeamOut]:
        return [team_out(t, role) for t, role in await teams.teams_of(principal.user)]

    @post("/", opt=WRITE, summary="Create a team (you become its owner)")
    async def create_team(
        self,
        data: JSONBody[TeamCreateIn],
        principal: NamedDependency[Principal],
        teams: NamedDependency[TeamService],
    ) -> TeamOut:
        team, member = await teams.create_team(principal.user, data)
        return team_out(team, member.role)

    @get("/{team_id:uuid}", opt=READ, summary="One team")
    async def get_team(
        self,
        team_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        teams: NamedDependency[TeamService],
    ) -> TeamOut:
        team, member = await teams.get_team(team_id, principal.user)
        return team_out(team, member.role)

    @patch("/{team_id:uuid}", opt=WRITE, summary="Rename / describe a team (admin)")
    async def update_team(
        self,
        team_id: FromPath[uuid.UUID],
        data: JSONBody[TeamUpdateIn],
        principal: NamedDependency[Principal],
        teams: NamedDependency[TeamService],
    ) -> TeamOut:
        team, member = await teams.update_team(team_id, principal.user, data)
        return team_out(team, member.role)

    @delete(
        "/{team_id:uuid}",
        opt=WRITE,
        summary="Delete a team (owner) and everything it owns; unused blobs leave the cluster",
        dependencies=MATERIALS,
    )
    async def delete_team(
        self,
        team_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        materials: NamedDependency[MaterialService],
        cluster: NamedDependency[Cluster],
    ) -> None:
        await materials.delete_team(team_id, principal.user, cluster)

    @get(
        "/{team_id:uuid}/archive",
        opt=READ,
        summary="The team's slides in the archive, the space that saves, its idle period",
        dependencies=MATERIALS,
    )
    async def archive(
        self,
        team_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        teams: NamedDependency[TeamService],
        cluster: NamedDependency[Cluster],
    ) -> ArchiveSummary:
        team, _ = await teams.get_team(team_id, principal.user)
        return await archive_summary(teams.db, cluster, team)

    @put(
        "/{team_id:uuid}/lifecycle",
        opt=WRITE,
        summary="Archive the team's slides unread for N days (admin); applied to every blob",
        dependencies=MATERIALS,
    )
    async def set_lifecycle(
        self,
        team_id: FromPath[uuid.UUID],
        data: JSONBody[TeamLifecycleIn],
        principal: NamedDependency[Principal],
        teams: NamedDependency[TeamService],
        cluster: NamedDependency[Cluster],
    ) -> ArchiveSummary:
        await teams.require(team_id, principal.user, "admin")
        team, _ = await teams.get_team(team_id, principal.user)
        team.archive_after_days = data.archive_after_days
        await teams.db.flush()
        await apply_team_lifecycle(teams.db, cluster, team)
        return await archive_summary(teams.db, cluster, team)

    @get("/{team_id:uuid}/members", opt=READ, summary="Members and their roles")
    async def list_members(
        self,
        team_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        teams: NamedDependency[TeamService],
    ) -> list[MemberOut]:
        return [member_out(m) for m in await teams.members(team_id, principal.user)]

    @patch("/{team_id:uuid}/members/{user_id:uuid}", opt=WRITE, summary="Change a member's role")
    async def change_role(
        self,
        team_id: FromPath[uuid.UUID],
        user_id: FromPath[uuid.UUID],
        data: JSONBody[RoleIn],
        principal: NamedDependency[Principal],
        teams: NamedDependency[TeamService],
    ) -> MemberOut:
        return member_out(await teams.change_role(team_id, principal.user, user_id, data.role))

    @delete(
        "/{team_id:uuid}/members/{user_id:uuid}", opt=WRITE, summary="Remove a member (or leave)"
    )
    async def remove_member(
        self,
        team_id: FromPath[uuid.UUID],
        user_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        teams: NamedDependency[TeamService],
    ) -> None:
        await teams.remove_member(team_id, principal.user, user_id)

    @post("/{team_id:uuid}/leave", opt=WRITE, status_code=HTTP_204_NO_CONTENT, summary="Leave")
    async def leave(
        self,
        team_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        teams: NamedDependency[TeamService],
    ) -> None:
        await teams.leave(team_id, principal.user)

    @post(
        "/{team_id:uuid}/transfer",
        opt=WRITE,
        status_code=HTTP_200_OK,
        summary="Transfer ownership (the old owner becomes admin)",
    )
    async def transfer(
        self,
        team_id: FromPath[uuid.UUID],
        data: JSONBody[TransferIn],
        principal: NamedDependency[Principal],
        teams: NamedDependency[TeamService],
    ) -> MemberOut:
        return member_out(await teams.transfer(team_id, principal.user, data.user_id))

    @get("/{team_id:uuid}/invitations", opt=READ, summary="Invitations (admin)")
    async def list_invitations(
        self,
        team_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        invitations: NamedDependency[InvitationService],
    ) -> list[InvitationOut]:
        rows = await invitations.list_for_team(team_id, principal.user)
        return [invitation_out(i) for i in rows]

    @post("/{team_id:uuid}/invitations", opt=WRITE, summary="Invite by link (admin)")
    async def create_invitation(
        self,
        team_id: FromPath[uuid.UUID],
        data: JSONBody[InvitationCreateIn],
        principal: NamedDependency[Principal],
        invitations: NamedDependency[InvitationService],
        settings: NamedDependency[Settings],
    ) -> InvitationCreatedOut:
        secret, invitation = await invitations.create_invitation(
            team_id, principal.user, data, settings.invitation_ttl_hours
        )
        out = invitation_out(invitation, secret, invitation_url(settings, secret))
        assert isinstance(out, InvitationCreatedOut)
        return out

    @delete(
        "/{team_id:uuid}/invitations/{invitation_id:uuid}",
        opt=WRITE,
        status_code=HTTP_204_NO_CONTENT,
        summary="Revoke a pending invitation (admin)",
    )
    async def revoke_invitation(
        self,
        team_id: FromPath[uuid.UUID],
        invitation_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        invitations: NamedDependency[InvitationService],
    ) -> None:
        await invitations.revoke(team_id, principal.user, invitation_id)


class InvitationController(Controller):
    path = "/api/invitations"
    tags = ["teams"]
    dependencies = {"invitations": Provide(provide_invitations, sync_to_thread=False)}

    @get("/{token:str}", opt=READ, summary="What an invitation link offers")
    async def preview(
        self,
        token: InvitationToken,
        principal: NamedDependency[Principal],
        invitations: NamedDependency[InvitationService],
    ) -> InvitationOut:
        return invitation_out(await invitations.by_secret(token))

    @post(
        "/{token:str}/accept",
        opt=WRITE,
        guards=[same_origin],
        status_code=HTTP_200_OK,
        summary="Join the team",
    )
    async def accept(
        self,
        token: InvitationToken,
        principal: NamedDependency[Principal],
        invitations: NamedDependency[InvitationService],
    ) -> MemberOut:
        return member_out(await invitations.accept(token, principal.user))

    @post(
        "/{token:str}/decline",
        opt=WRITE,
        guards=[same_origin],
        status_code=HTTP_200_OK,
        summary="Decline",
    )
    async def decline(
        self,
        token: InvitationToken,
        principal: NamedDependency[Principal],
        invitations: NamedDependency[InvitationService],
    ) -> InvitationOut:
        return invitation_out(await invitations.decline(token, principal.user))

from __future__ import annotations

from labportal.domain.teams.invitations import effective_status
from labportal.domain.teams.models import Invitation, Membership, Team
from labportal.domain.teams.schemas import InvitationCreatedOut, InvitationOut, MemberOut, TeamOut


def team_out(team: Team, role: str) -> TeamOut:
    return TeamOut(
        id=team.id,
        name=team.name,
        description=team.description,
        role=role,  # type: ignore[arg-type]
        created_at=team.created_at,
        label_min_role=team.label_min_role or "admin",  # type: ignore[arg-type]
    )


def member_out(member: Membership) -> MemberOut:
    return MemberOut(
        user_id=member.user_id,
        email=member.user.email,
        display_name=member.user.display_name,
        role=member.role,  # type: ignore[arg-type]
        joined_at=member.created_at,
    )


def invitation_out(invitation: Invitation, secret: str = "", url: str = "") -> InvitationOut:
    fields = {
        "id": invitation.id,
        "team_id": invitation.team_id,
        "team_name": invitation.team.name,
        "role": invitation.role,
        "email": invitation.email,
        "status": effective_status(invitation),
        "expires_at": invitation.expires_at,
        "created_at": invitation.created_at,
    }
    if secret:
        return InvitationCreatedOut(**fields, token=secret, url=url)
    return InvitationOut(**fields)

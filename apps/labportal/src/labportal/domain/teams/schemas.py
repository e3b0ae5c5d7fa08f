from __future__ import annotations

import datetime
import uuid
from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, UnsetType

from labportal.domain import validation
from labportal.domain.teams.roles import AssignableRole, Role

Name = Annotated[str, Meta(min_length=1, max_length=100)]
Description = Annotated[str, Meta(max_length=2000)]


class TeamCreateIn(msgspec.Struct):
    name: Name
    description: Description = ""

    def __post_init__(self) -> None:
        self.name = validation.line(self.name, "name")
        self.description = validation.text(self.description, "description")


class TeamUpdateIn(msgspec.Struct):
    name: Name | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    label_min_role: Role | UnsetType = UNSET
    """The weakest role that may see slide labels and macro photos."""

    def __post_init__(self) -> None:
        if self.name is not UNSET:
            self.name = validation.line(self.name, "name")
        if self.description is not UNSET:
            self.description = validation.text(self.description, "description")


class TeamLifecycleIn(msgspec.Struct):
    """``PUT /api/teams/{id}/lifecycle`` (admin): days a slide may go unread before the
    cluster archives it (None: the cluster's default; 0: never; at most ten years)."""

    archive_after_days: Annotated[float, msgspec.Meta(ge=0, le=3650)] | None = None


class TeamOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    description: str
    role: Role
    """The caller's role in the team."""
    created_at: datetime.datetime
    label_min_role: Role = "admin"


class MemberOut(msgspec.Struct):
    user_id: uuid.UUID
    email: str
    display_name: str
    role: Role
    joined_at: datetime.datetime


class RoleIn(msgspec.Struct):
    role: AssignableRole


class TransferIn(msgspec.Struct):
    user_id: uuid.UUID


class InvitationCreateIn(msgspec.Struct):
    role: AssignableRole = "member"
    email: Annotated[str, Meta(max_length=254)] | None = None
    """Only this account may accept, when given."""
    expires_in_hours: Annotated[int, Meta(ge=1, le=24 * 30)] | None = None

    def __post_init__(self) -> None:
        if self.email is not None:
            self.email = validation.email(self.email)


class InvitationOut(msgspec.Struct):
    id: uuid.UUID
    team_id: uuid.UUID
    team_name: str
    role: Role
    email: str | None
    status: str
    """pending, accepted, declined, revoked or expired."""
    expires_at: datetime.datetime
    created_at: datetime.datetime


class InvitationCreatedOut(InvitationOut):
    token: str = ""
    url: str = ""
    """The link to hand to the invitee (shown once)."""

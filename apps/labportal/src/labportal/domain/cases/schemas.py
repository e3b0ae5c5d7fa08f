from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

from labportal.domain import validation
from labportal.domain.accounts.schemas import UserRef
from labportal.domain.cases.workflow import Status

Title = Annotated[str, Meta(min_length=1, max_length=200)]
Description = Annotated[str, Meta(max_length=20000)]
Tags = Annotated[list[Annotated[str, Meta(min_length=1, max_length=50)]], Meta(max_length=20)]
Fields = Annotated[dict[str, Any], Meta(max_length=50)]
"""Values of the team-defined fields, checked against the current definition."""


class CaseCreateIn(msgspec.Struct):
    title: Title
    description: Description = ""
    tags: Tags = msgspec.field(default_factory=list)
    assignee_id: uuid.UUID | None = None
    fields: Fields = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.title = validation.line(self.title, "title")
        self.description = validation.text(self.description, "description")
        self.tags = validation.tags(self.tags)


class CaseUpdateIn(msgspec.Struct):
    """Only the fields present change; ``assignee_id: null`` unassigns."""

    title: Title | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    tags: Tags | UnsetType = UNSET
    assignee_id: uuid.UUID | UnsetType | None = UNSET
    fields: Fields | UnsetType = UNSET
    """The fields given change (``null`` removes one); the others keep their values."""

    def __post_init__(self) -> None:
        if self.title is not UNSET:
            self.title = validation.line(self.title, "title")
        if self.description is not UNSET:
            self.description = validation.text(self.description, "description")
        if self.tags is not UNSET:
            self.tags = validation.tags(self.tags)


class TransitionIn(msgspec.Struct):
    status: Status
    note: Annotated[str, Meta(max_length=2000)] = ""

    def __post_init__(self) -> None:
        self.note = validation.text(self.note, "note")


class CaseOut(msgspec.Struct):
    id: uuid.UUID
    team_id: uuid.UUID
    title: str
    description: str
    tags: list[str]
    status: Status
    allowed_transitions: list[Status]
    assignee: UserRef | None
    created_by: UserRef | None
    created_at: datetime.datetime
    updated_at: datetime.datetime
    fields: dict[str, Any] = msgspec.field(default_factory=dict)
    fields_version: int | None = None
    """The definition version the values were checked against (None: no fields)."""


class CasePage(msgspec.Struct):
    items: list[CaseOut]
    total: int
    limit: int
    offset: int


class CaseEventOut(msgspec.Struct):
    id: uuid.UUID
    action: str
    """created, updated, status_changed, comment_added, thread_resolved, thread_reopened."""
    actor: UserRef | None
    changes: dict[str, Any]
    """For each changed field: {"from": old, "to": new}."""
    created_at: datetime.datetime

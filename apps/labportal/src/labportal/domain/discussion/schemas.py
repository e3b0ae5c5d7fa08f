from __future__ import annotations

import datetime
import uuid
from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, UnsetType

from labportal.domain import validation
from labportal.domain.accounts.schemas import UserRef

Body = Annotated[str, Meta(min_length=1, max_length=10000)]
Pixels = Annotated[float, Meta(ge=0, le=1e9)]


class Region(msgspec.Struct):
    """A rectangle of a slide in level-0 pixels."""

    x: Pixels
    y: Pixels
    width: Annotated[float, Meta(gt=0, le=1e9)]
    height: Annotated[float, Meta(gt=0, le=1e9)]


class CommentCreateIn(msgspec.Struct):
    body: Body
    parent_id: uuid.UUID | None = None
    """Reply in the thread started by this comment; null starts a new thread."""
    material_id: uuid.UUID | None = None
    """Anchor a new thread to a slide of the case..."""
    region: Region | None = None
    """...and to a region of it (opening the thread opens the viewer there)."""

    def __post_init__(self) -> None:
        self.body = validation.text(self.body, "body")
        if not self.body.strip():
            raise ValueError("body must not be blank")


class CommentUpdateIn(msgspec.Struct):
    body: Body | UnsetType = UNSET
    resolved: bool | UnsetType = UNSET
    """Resolve or reopen a thread (only on the comment that starts it)."""

    def __post_init__(self) -> None:
        if self.body is not UNSET:
            self.body = validation.text(self.body, "body")
            if not self.body.strip():
                raise ValueError("body must not be blank")


class CommentOut(msgspec.Struct):
    id: uuid.UUID
    case_id: uuid.UUID
    parent_id: uuid.UUID | None
    author: UserRef | None
    body: str
    resolved: bool
    resolved_by: UserRef | None
    resolved_at: datetime.datetime | None
    created_at: datetime.datetime
    updated_at: datetime.datetime
    material_id: uuid.UUID | None = None
    region: Region | None = None

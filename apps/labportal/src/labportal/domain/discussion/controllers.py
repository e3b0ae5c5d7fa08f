"""/api/cases/{case_id}/comments and /api/comments/{comment_id}."""

from __future__ import annotations

import uuid

from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from labportal.domain.discussion.convert import comment_out
from labportal.domain.discussion.schemas import CommentCreateIn, CommentOut, CommentUpdateIn
from labportal.domain.discussion.services import CommentService
from labportal.security.principal import Principal

READ, WRITE = {"scope": "cases:read"}, {"scope": "cases:write"}


def provide_comments(db_session: NamedDependency[AsyncSession]) -> CommentService:
    return CommentService(session=db_session)


class CaseCommentsController(Controller):
    path = "/api/cases/{case_id:uuid}/comments"
    tags = ["discussion"]
    dependencies = {"comments": Provide(provide_comments, sync_to_thread=False)}

    @get("/", opt=READ, summary="All comments on a case, oldest first (threads via parent_id)")
    async def list_comments(
        self,
        case_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        comments: NamedDependency[CommentService],
    ) -> list[CommentOut]:
        return [comment_out(c) for c in await comments.list_comments(case_id, principal.user)]

    @post("/", opt=WRITE, summary="Start a thread or reply (member)")
    async def add_comment(
        self,
        case_id: FromPath[uuid.UUID],
        data: JSONBody[CommentCreateIn],
        principal: NamedDependency[Principal],
        comments: NamedDependency[CommentService],
    ) -> CommentOut:
        return comment_out(await comments.add_comment(case_id, principal.user, data))


class CommentController(Controller):
    path = "/api/comments/{comment_id:uuid}"
    tags = ["discussion"]
    dependencies = {"comments": Provide(provide_comments, sync_to_thread=False)}

    @patch("/", opt=WRITE, summary="Edit (author) or resolve/reopen a thread (member)")
    async def update_comment(
        self,
        comment_id: FromPath[uuid.UUID],
        data: JSONBody[CommentUpdateIn],
        principal: NamedDependency[Principal],
        comments: NamedDependency[CommentService],
    ) -> CommentOut:
        return comment_out(await comments.update_comment(comment_id, principal.user, data))

    @delete("/", opt=WRITE, summary="Delete a comment (author or admin)")
    async def delete_comment(
        self,
        comment_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        comments: NamedDependency[CommentService],
    ) -> None:
        await comments.delete_comment(comment_id, principal.user)

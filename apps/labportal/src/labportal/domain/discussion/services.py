"""Comment threads on cases: viewers read, members write, authors edit, admins moderate."""

from __future__ import annotations

import uuid

import msgspec
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from msgspec import UNSET
from sqlalchemy import select

from labportal.db.base import utcnow
from labportal.domain.accounts.models import User
from labportal.domain.cases.models import Case
from labportal.domain.cases.services import CaseService, ensure_unlocked
from labportal.domain.discussion.models import Comment
from labportal.domain.discussion.schemas import CommentCreateIn, CommentUpdateIn
from labportal.domain.materials.models import Material
from labportal.domain.teams.models import Membership
from labportal.domain.teams.roles import at_least
from labportal.errors import Forbidden, NotFound, Unprocessable


class CommentRepository(SQLAlchemyAsyncRepository[Comment]):
    model_type = Comment


class CommentService(SQLAlchemyAsyncRepositoryService[Comment, CommentRepository]):
    repository_type = CommentRepository

    @property
    def cases(self) -> CaseService:
        return CaseService(session=self.repository.session)

    async def list_comments(self, case_id: uuid.UUID, user: User) -> list[Comment]:
        await self.cases.get_case(case_id, user)
        rows = await self.repository.session.scalars(
            select(Comment)
            .where(Comment.case_id == case_id)
            .order_by(Comment.created_at, Comment.id)
        )
        return list(rows)

    async def add_comment(self, case_id: uuid.UUID, user: User, data: CommentCreateIn) -> Comment:
        case, _ = await self.cases.writable(case_id, user)
        ensure_unlocked(case, "commented on")
        if data.parent_id is not None:
            parent = await self.repository.get_one_or_none(id=data.parent_id, case_id=case_id)
            if parent is None:
                raise Unprocessable(
                    "parent_id is not a comment on this case", code="invalid_parent"
                )
            if parent.parent_id is not None:
                raise Unprocessable(
                    "reply to the comment that starts the thread", code="invalid_parent"
                )
        if data.material_id is not None or data.region is not None:
            await self._check_anchor(case_id, data)
        comment = Comment(
            case_id=case_id,
            parent_id=data.parent_id,
            author_id=user.id,
            body=data.body,
            material_id=data.material_id,
            region=msgspec.to_builtins(data.region) if data.region else None,
        )
        comment.author, comment.resolved_by = user, None
        comment = await self.repository.add(comment)
        await self.cases.record(case, user, "comment_added", {"comment_id": str(comment.id)})
        return comment

    async def _check_anchor(self, case_id: uuid.UUID, data: CommentCreateIn) -> None:
        if data.parent_id is not None:
            raise Unprocessable(
                "only a new thread can be anchored to a slide", code="invalid_anchor"
            )
        if data.material_id is None:
            raise Unprocessable("a region needs material_id", code="invalid_anchor")
        material = await self.repository.session.get(Material, data.material_id)
        if material is None or material.case_id != case_id:
            raise Unprocessable("material_id is not a slide of this case", code="invalid_anchor")

    async def _comment(self, comment_id: uuid.UUID, user: User) -> tuple[Comment, Case, Membership]:
        comment = await self.repository.get_one_or_none(id=comment_id)
        if comment is None:
            raise NotFound("no such comment")
        try:
            case, member = await self.cases.get_case(comment.case_id, user)
        except NotFound:
            raise NotFound("no such comment") from None
        return comment, case, member

    async def update_comment(
        self, comment_id: uuid.UUID, user: User, data: CommentUpdateIn
    ) -> Comment:
        comment, case, member = await self._comment(comment_id, user)
        if not at_least(member.role, "member"):
            raise Forbidden(f"a team {member.role} cannot change comments")
        ensure_unlocked(case, "edited or resolved")
        if data.body is not UNSET and data.body != comment.body:
            if comment.author_id != user.id:
                raise Forbidden("only the author can edit a comment")
            comment.body = data.body
        if data.resolved is not UNSET and data.resolved != comment.resolved:
            if comment.parent_id is not None:
                raise Unprocessable(
                    "only the comment that starts a thread can be resolved", code="not_a_thread"
                )
            comment.resolved = data.resolved
            comment.resolved_by_id = user.id if data.resolved else None
            comment.resolved_by = user if data.resolved else None
            comment.resolved_at = utcnow() if data.resolved else None
            action = "thread_resolved" if data.resolved else "thread_reopened"
            await self.cases.record(case, user, action, {"comment_id": str(comment.id)})
        comment.updated_at = utcnow()
        await self.repository.session.flush()
        return comment

    async def delete_comment(self, comment_id: uuid.UUID, user: User) -> None:
        comment, case, member = await self._comment(comment_id, user)
        if comment.author_id != user.id and not at_least(member.role, "admin"):
            raise Forbidden("only the author or a team admin can delete a comment")
        ensure_unlocked(case, "deleted")
        await self.repository.delete(comment.id)

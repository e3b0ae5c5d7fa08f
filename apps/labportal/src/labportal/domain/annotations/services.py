"""Annotation CRUD and bounding-box queries; access follows the material's case."""

from __future__ import annotations

import uuid
from typing import Any

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from msgspec import UNSET
from sqlalchemy import select

from labportal.db.base import utcnow
from labportal.domain.accounts.models import User
from labportal.domain.annotations.models import Annotation
from labportal.domain.annotations.schemas import AnnotationIn, AnnotationUpdateIn, check_points
from labportal.domain.cases.services import ensure_unlocked
from labportal.domain.materials.services import Access, MaterialService
from labportal.domain.teams.roles import at_least
from labportal.errors import Forbidden, NotFound, Unprocessable


def overlapping(table: Any, bbox: tuple[float, float, float, float]) -> list[Any]:
    """Conditions for rows whose indexed bounding box (``min_x``... columns) meets ``bbox``."""
    x0, y0, x1, y1 = bbox
    return [table.min_x <= x1, table.max_x >= x0, table.min_y <= y1, table.max_y >= y0]


class AnnotationRepository(SQLAlchemyAsyncRepository[Annotation]):
    model_type = Annotation


class AnnotationService(SQLAlchemyAsyncRepositoryService[Annotation, AnnotationRepository]):
    repository_type = AnnotationRepository

    @property
    def materials(self) -> MaterialService:
        return MaterialService(session=self.repository.session)

    async def query(
        self,
        material_id: uuid.UUID,
        user: User,
        bbox: tuple[float, float, float, float] | None,
        limit: int,
        offset: int,
    ) -> tuple[list[Annotation], bool]:
        await self.materials.access(material_id, user)
        stmt = select(Annotation).where(Annotation.material_id == material_id)
        if bbox is not None:
            stmt = stmt.where(*overlapping(Annotation, bbox))
        rows = list(
            await self.repository.session.scalars(
                stmt.order_by(Annotation.created_at, Annotation.id).limit(limit + 1).offset(offset)
            )
        )
        return rows[:limit], len(rows) > limit

    def _new(self, material_id: uuid.UUID, user: User, data: AnnotationIn) -> Annotation:
        annotation = Annotation(
            material_id=material_id,
            kind=data.kind,
            label=data.label,
            color=data.color,
            created_by_id=user.id,
        )
        annotation.set_points(data.points)
        annotation.created_by = user
        return annotation

    async def create(self, material_id: uuid.UUID, user: User, data: AnnotationIn) -> Annotation:
        access = await self.materials.access(material_id, user, "member")
        ensure_unlocked(access.case, "annotated")
        return await self.repository.add(self._new(material_id, user, data))

    async def create_many(
        self, material_id: uuid.UUID, user: User, items: list[AnnotationIn]
    ) -> int:
        access = await self.materials.access(material_id, user, "member")
        ensure_unlocked(access.case, "annotated")
        await self.repository.add_many([self._new(material_id, user, d) for d in items])
        return len(items)

    async def _own(self, annotation_id: uuid.UUID, user: User) -> tuple[Annotation, Access]:
        annotation = await self.repository.get_one_or_none(id=annotation_id)
        if annotation is None:
            raise NotFound("no such annotation")
        try:
            access = await self.materials.access(annotation.material_id, user)
        except NotFound:
            raise NotFound("no such annotation") from None
        if not access.can_write:
            raise Forbidden(f"a team {access.member.role} cannot change annotations")
        if annotation.created_by_id != user.id and not at_least(access.member.role, "admin"):
            raise Forbidden("only the author or a team admin can change this annotation")
        ensure_unlocked(access.case, "annotated")
        return annotation, access

    async def update(
        self, annotation_id: uuid.UUID, user: User, data: AnnotationUpdateIn
    ) -> Annotation:
        annotation, _ = await self._own(annotation_id, user)
        if data.points is not UNSET:
            try:
                annotation.set_points(check_points(annotation.kind, data.points))
            except ValueError as exc:
                raise Unprocessable(str(exc), code="validation_failed") from None
        if data.label is not UNSET:
            annotation.label = data.label
        if data.color is not UNSET:
            annotation.color = data.color
        annotation.updated_at = utcnow()
        await self.repository.session.flush()
        return annotation

    async def delete(self, annotation_id: uuid.UUID, user: User) -> None:
        annotation, _ = await self._own(annotation_id, user)
        await self.repository.delete(annotation.id)

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
from labportal.domain.annotations.classes import ClassService
from labportal.domain.annotations.measure import measure
from labportal.domain.annotations.models import Annotation
from labportal.domain.annotations.schemas import AnnotationIn, AnnotationUpdateIn, check_points
from labportal.domain.cases.services import ensure_unlocked
from labportal.domain.materials.models import Material
from labportal.domain.materials.services import Access, MaterialService
from labportal.domain.teams.roles import at_least
from labportal.errors import Forbidden, NotFound, Unprocessable


def slide_mpp(material: Material) -> tuple[float, float] | None:
    """The slide's µm per pixel (x, y) from its normalised metadata, when it has one."""
    meta = (material.slide or {}).get("metadata") or {}
    x, y = meta.get("mpp_x"), meta.get("mpp_y") or meta.get("mpp_x")
    if isinstance(x, int | float) and isinstance(y, int | float) and x > 0 and y > 0:
        return float(x), float(y)
    return None


def _place(annotation: Annotation, points: list[list[float]], access: Access) -> None:
    annotation.set_points(points)
    annotation.length_um, annotation.area_um2 = measure(
        annotation.kind, points, slide_mpp(access.material)
    )


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

    @property
    def classes(self) -> ClassService:
        return ClassService(self.repository.session)

    async def query(
        self,
        material_id: uuid.UUID,
        user: User,
        bbox: tuple[float, float, float, float] | None,
        limit: int,
        offset: int,
        classes: list[str] | None = None,
    ) -> tuple[list[Annotation], bool]:
        await self.materials.access(material_id, user)
        stmt = select(Annotation).where(Annotation.material_id == material_id)
        if classes:
            stmt = stmt.where(Annotation.class_name.in_(classes))
        if bbox is not None:
            stmt = stmt.where(*overlapping(Annotation, bbox))
        rows = list(
            await self.repository.session.scalars(
                stmt.order_by(Annotation.created_at, Annotation.id).limit(limit + 1).offset(offset)
            )
        )
        return rows[:limit], len(rows) > limit

    async def _new(self, access: Access, user: User, data: AnnotationIn) -> Annotation:
        colour = await self.classes.colour_of(access.case.team_id, data.class_name)
        annotation = Annotation(
            material_id=access.material.id,
            kind=data.kind,
            label=data.label,
            color=data.color or colour or "#ff0000",
            class_name=data.class_name,
            created_by_id=user.id,
        )
        _place(annotation, data.points, access)
        annotation.created_by = user
        return annotation

    async def create(self, material_id: uuid.UUID, user: User, data: AnnotationIn) -> Annotation:
        access = await self.materials.access(material_id, user, "member")
        ensure_unlocked(access.case, "annotated")
        return await self.repository.add(await self._new(access, user, data))

    async def create_many(
        self, material_id: uuid.UUID, user: User, items: list[AnnotationIn]
    ) -> int:
        access = await self.materials.access(material_id, user, "member")
        ensure_unlocked(access.case, "annotated")
        await self.repository.add_many([await self._new(access, user, d) for d in items])
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
        annotation, access = await self._own(annotation_id, user)
        if data.points is not UNSET:
            try:
                _place(annotation, check_points(annotation.kind, data.points), access)
            except ValueError as exc:
                raise Unprocessable(str(exc), code="validation_failed") from None
        if data.class_name is not UNSET and data.class_name != annotation.class_name:
            await self.classes.colour_of(access.case.team_id, data.class_name)
            annotation.class_name = data.class_name
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

"""/api/materials/{material_id}/annotations and /api/annotations/{annotation_id}."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, delete, get, patch, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK
from sqlalchemy.ext.asyncio import AsyncSession

from labportal.domain.accounts.convert import user_ref
from labportal.domain.annotations import geojson
from labportal.domain.annotations.classes import ClassService
from labportal.domain.annotations.models import Annotation, AnnotationClass
from labportal.domain.annotations.schemas import (
    AnnotationClassesIn,
    AnnotationClassOut,
    AnnotationIn,
    AnnotationOut,
    AnnotationPage,
    AnnotationUpdateIn,
    ImportOut,
)
from labportal.domain.annotations.services import AnnotationService
from labportal.errors import Problem, Unprocessable
from labportal.security.principal import Principal

READ, WRITE = {"scope": "cases:read"}, {"scope": "cases:write"}


def provide_annotations(db_session: NamedDependency[AsyncSession]) -> AnnotationService:
    return AnnotationService(session=db_session)


DEPENDENCIES = {"annotations": Provide(provide_annotations, sync_to_thread=False)}


def annotation_out(a: Annotation) -> AnnotationOut:
    return AnnotationOut(
        id=a.id,
        material_id=a.material_id,
        kind=a.kind,  # type: ignore[arg-type]
        points=a.points,
        label=a.label,
        color=a.color,
        class_name=a.class_name,
        length_um=a.length_um,
        area_um2=a.area_um2,
        bbox=[a.min_x, a.min_y, a.max_x, a.max_y],
        created_by=user_ref(a.created_by),
        created_at=a.created_at,
        updated_at=a.updated_at,
    )


def parse_bbox(raw: str | None) -> tuple[float, float, float, float] | None:
    if not raw:
        return None
    try:
        x0, y0, x1, y1 = (float(v) for v in raw.split(","))
    except ValueError:
        raise Problem(
            "bbox must be four numbers: min_x,min_y,max_x,max_y", code="validation_failed"
        ) from None
    if not all(abs(v) < 1e12 for v in (x0, y0, x1, y1)) or x0 > x1 or y0 > y1:
        raise Problem("bbox must be finite with min <= max", code="validation_failed")
    return x0, y0, x1, y1


class MaterialAnnotations(Controller):
    path = "/api/materials/{material_id:uuid}/annotations"
    tags = ["annotations"]
    dependencies = DEPENDENCIES

    @get("/", opt=READ, summary="Annotations intersecting a box (level-0 pixels), oldest first")
    async def list_annotations(
        self,
        material_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        annotations: NamedDependency[AnnotationService],
        bbox: Annotated[
            str | None, QueryParameter(max_length=200, description="min_x,min_y,max_x,max_y")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=5000)] = 1000,
        offset: Annotated[int, QueryParameter(ge=0, le=1_000_000)] = 0,
        classes: Annotated[
            str | None,
            QueryParameter(
                name="class", max_length=2000, description="only these classes (comma-separated)"
            ),
        ] = None,
    ) -> AnnotationPage:
        wanted = [c.strip() for c in (classes or "").split(",") if c.strip()]
        rows, truncated = await annotations.query(
            material_id, principal.user, parse_bbox(bbox), limit, offset, wanted
        )
        return AnnotationPage(items=[annotation_out(a) for a in rows], truncated=truncated)

    @post("/", opt=WRITE, summary="Draw an annotation (member)")
    async def create_annotation(
        self,
        material_id: FromPath[uuid.UUID],
        data: JSONBody[AnnotationIn],
        principal: NamedDependency[Principal],
        annotations: NamedDependency[AnnotationService],
    ) -> AnnotationOut:
        return annotation_out(await annotations.create(material_id, principal.user, data))

    @get("/geojson", opt=READ, summary="Every annotation as a GeoJSON FeatureCollection")
    async def export_geojson(
        self,
        material_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        annotations: NamedDependency[AnnotationService],
    ) -> dict[str, Any]:
        rows, _ = await annotations.query(material_id, principal.user, None, 1_000_000, 0)
        return geojson.collection(rows)

    @post("/geojson", opt=WRITE, summary="Import a GeoJSON FeatureCollection (member)")
    async def import_geojson(
        self,
        material_id: FromPath[uuid.UUID],
        data: JSONBody[geojson.FeatureCollection],
        principal: NamedDependency[Principal],
        annotations: NamedDependency[AnnotationService],
    ) -> ImportOut:
        try:
            items = [geojson.from_feature(f, i) for i, f in enumerate(data.features)]
        except ValueError as exc:
            raise Unprocessable(str(exc), code="invalid_geojson") from None
        return ImportOut(imported=await annotations.create_many(material_id, principal.user, items))


class AnnotationController(Controller):
    path = "/api/annotations/{annotation_id:uuid}"
    tags = ["annotations"]
    dependencies = DEPENDENCIES

    @patch("/", opt=WRITE, summary="Move, relabel or reclassify an annotation (author or admin)")
    async def update_annotation(
        self,
        annotation_id: FromPath[uuid.UUID],
        data: JSONBody[AnnotationUpdateIn],
        principal: NamedDependency[Principal],
        annotations: NamedDependency[AnnotationService],
    ) -> AnnotationOut:
        return annotation_out(await annotations.update(annotation_id, principal.user, data))

    @delete("/", opt=WRITE, summary="Delete an annotation (author or admin)")
    async def delete_annotation(
        self,
        annotation_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        annotations: NamedDependency[AnnotationService],
    ) -> None:
        await annotations.delete(annotation_id, principal.user)


def provide_classes(db_session: NamedDependency[AsyncSession]) -> ClassService:
    return ClassService(db_session)


def _out(rows: list[AnnotationClass]) -> list[AnnotationClassOut]:
    return [AnnotationClassOut(name=r.name, color=r.color) for r in rows]


class TeamAnnotationClassesController(Controller):
    path = "/api/teams/{team_id:uuid}/annotation-classes"
    tags = ["annotations"]
    dependencies = {"class_service": Provide(provide_classes, sync_to_thread=False)}

    @get("/", opt={"scope": "cases:read"}, summary="The team's annotation classes, in order")
    async def list_classes(
        self,
        team_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        class_service: NamedDependency[ClassService],
    ) -> list[AnnotationClassOut]:
        return _out(await class_service.read(team_id, principal.user))

    @put(
        "/",
        opt={"scope": "teams:write"},
        status_code=HTTP_200_OK,
        summary="Replace the team's annotation classes (admin); annotations keep theirs",
    )
    async def replace_classes(
        self,
        team_id: FromPath[uuid.UUID],
        data: JSONBody[AnnotationClassesIn],
        principal: NamedDependency[Principal],
        class_service: NamedDependency[ClassService],
    ) -> list[AnnotationClassOut]:
        return _out(await class_service.replace(team_id, principal.user, data.classes))

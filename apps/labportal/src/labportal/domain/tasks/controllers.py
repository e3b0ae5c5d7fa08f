"""/api/models, /api/teams/{team_id}/models and /api/tasks (the task API contract)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.handlers import BaseRouteHandler
from litestar.params import Body, FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from labportal.domain.annotations.controllers import parse_bbox
from labportal.domain.annotations.services import overlapping
from labportal.domain.tasks import catalog, registry, results
from labportal.domain.tasks.models import AnalysisTask, TaskFeature
from labportal.domain.tasks.schemas import (
    HeatmapOut,
    ModelList,
    ModelOut,
    Progress,
    Status,
    TaskIn,
    TaskInputOut,
    TaskList,
    TaskOut,
    TaskPage,
    TaskResultOut,
)
from labportal.domain.tasks.services import TaskFilters, TaskService
from labportal.domain.teams.services import TeamService
from labportal.errors import NotFound, Unauthorized, Unprocessable
from labportal.security.principal import SESSION_COOKIE, Principal
from labportal.settings import Settings

READ, WRITE = {"scope": "cases:read"}, {"scope": "cases:write"}
PARQUET = "application/vnd.apache.parquet"
GEOJSON = "application/geo+json"
MODEL_BODY_BYTES = 600 * 1024 * 1024
"""The largest model upload read at all (LABPORTAL_MODEL_MAX_BYTES is checked as it streams)."""


def task_out(t: AnalysisTask) -> TaskOut:
    return TaskOut(
        id=t.id,
        team_id=t.team_id,
        case_id=t.case_id,
        material_id=t.material_id,
        model=t.model,
        model_version=t.model_version,
        model_sha256=t.model_sha256,
        params=t.params,
        status=t.status,  # type: ignore[arg-type]
        progress=Progress(done=t.done, planned=t.planned),
        error=t.error,
        created_by=t.created_by_id,
        created_at=t.created_at,
        started_at=t.started_at,
        finished_at=t.finished_at,
    )


async def wake_runner(request: Request[Any, Any, Any]) -> None:
    """After the response (the new tasks are committed): the in-process runner looks now."""
    runner = getattr(request.app.state, "runner", None)
    if runner is not None:
        runner.wake()


class ModelController(Controller):
    path = "/api/models"
    tags = ["tasks"]

    @get("/", opt=READ, summary="Models: the built-ins, and a team's registered ONNX models")
    async def list_models(
        self,
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
        team_id: Annotated[
            uuid.UUID | None, QueryParameter(description="add this team's registered models")
        ] = None,
    ) -> ModelList:
        refs = catalog.builtin_refs()
        if team_id is not None:
            await TeamService(session=db_session).membership(team_id, principal.user)
            refs += await catalog.team_refs(db_session, team_id)
        return ModelList(items=[r.out() for r in refs])


@dataclass
class ModelUpload:
    file: UploadFile
    """The .onnx file."""
    manifest: str
    """JSON: name, version, description?, patch_size, target_mpp, normalisation {mean,
    std}, class_names, input_name?, output? ("logits" or "probabilities")."""


def credentials_first(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A caller without credentials gets 401 before a multipart body is read."""
    if not connection.headers.get("authorization") and not connection.cookies.get(SESSION_COOKIE):
        raise Unauthorized(
            "log in or send 'Authorization: Bearer <API token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


class TeamModelController(Controller):
    path = "/api/teams/{team_id:uuid}/models"
    tags = ["tasks"]

    @post(
        "/",
        opt={"scope": "teams:write"},
        status_code=HTTP_201_CREATED,
        summary="Register an ONNX patch classifier (team admin; multipart file + manifest)",
        request_max_body_size=MODEL_BODY_BYTES,
        guards=[credentials_first],
    )
    async def register_model(
        self,
        team_id: FromPath[uuid.UUID],
        data: Annotated[ModelUpload, Body(media_type=RequestEncodingType.MULTI_PART)],
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
    ) -> ModelOut:
        if not isinstance(data.file, UploadFile):
            raise Unprocessable("send the model as the multipart part 'file'", code="invalid_model")
        row = await registry.register(
            db_session, settings, team_id, principal.user, data.file, data.manifest
        )
        return catalog.registered_ref(row).out()


def provide_tasks(db_session: NamedDependency[AsyncSession]) -> TaskService:
    return TaskService(db_session)


class TaskController(Controller):
    path = "/api/tasks"
    tags = ["tasks"]

    @post(
        "/",
        opt=WRITE,
        status_code=HTTP_201_CREATED,
        after_response=wake_runner,
        summary="Run a model on a material, or on every uploaded material of a case (member)",
    )
    async def create_tasks(
        self,
        data: JSONBody[TaskIn],
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
    ) -> TaskList:
        tasks = await TaskService(db_session).create(principal.user, data)
        return TaskList(items=[task_out(t) for t in tasks])

    @get("/", opt=READ, summary="Tasks of my teams, newest first")
    async def list_tasks(
        self,
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
        material_id: FromQuery[uuid.UUID | None] = None,
        case_id: FromQuery[uuid.UUID | None] = None,
        model: Annotated[str | None, QueryParameter(max_length=100)] = None,
        status: FromQuery[Status | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=1_000_000)] = 0,
    ) -> TaskPage:
        filters = TaskFilters(material_id, case_id, model, status)
        rows, total = await TaskService(db_session).page(principal.user, filters, limit, offset)
        return TaskPage(items=[task_out(t) for t in rows], total=total, limit=limit, offset=offset)

    @get("/{task_id:uuid}", opt=READ, summary="A task: status, progress, timings, error")
    async def get_task(
        self,
        task_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
    ) -> TaskOut:
        return task_out(await TaskService(db_session).get(task_id, principal.user))

    @delete(
        "/{task_id:uuid}",
        opt=WRITE,
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete a task and its results; a running one is cancelled (member)",
    )
    async def delete_task(
        self,
        task_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
    ) -> None:
        await TaskService(db_session).delete(task_id, principal.user)

    @get("/{task_id:uuid}/input", opt=READ, summary="What the task runs on")
    async def task_input(
        self,
        task_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
    ) -> TaskInputOut:
        t = await TaskService(db_session).get(task_id, principal.user)
        return TaskInputOut(
            material_id=t.material_id,
            blob_sha256=t.blob_id,
            model=t.model,
            model_version=t.model_version,
            model_sha256=t.model_sha256,
            params=t.params,
        )

    @get(
        "/{task_id:uuid}/result",
        opt=READ,
        summary="The result: summary, provenance, feature count, heatmap "
        "(?format=parquet: the measurements; ?format=geojson: every feature)",
        responses={},
    )
    async def task_result(
        self,
        task_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
        format: Annotated[str | None, QueryParameter(pattern="^(json|parquet|geojson)$")] = None,
    ) -> Response[Any]:
        task, found = await TaskService(db_session).result(task_id, principal.user)
        if format == "parquet":
            return Response(
                found.measurements,
                media_type=PARQUET,
                headers={"Content-Disposition": f'attachment; filename="task-{task.id}.parquet"'},
            )
        if format == "geojson":
            rows = await db_session.scalars(
                select(TaskFeature.feature)
                .where(TaskFeature.task_id == task.id)
                .order_by(TaskFeature.position)
            )
            return Response(
                {"type": "FeatureCollection", "features": list(rows)}, media_type=GEOJSON
            )
        heatmap = None
        if found.heatmap_meta is not None:
            x, y, width, height = results.heatmap_extent(found.heatmap_meta)
            heatmap = HeatmapOut(
                url=f"/api/tasks/{task.id}/heatmap.png",
                x=x,
                y=y,
                width=width,
                height=height,
                classes=list(found.heatmap_meta["classes"]),
            )
        return Response(
            TaskResultOut(
                summary=found.summary,
                provenance=found.provenance,
                feature_count=found.feature_count,
                heatmap=heatmap,
            )
        )

    @get(
        "/{task_id:uuid}/features",
        opt=READ,
        summary="The result's features intersecting a box (level-0 pixels), GeoJSON",
        media_type=GEOJSON,
    )
    async def task_features(
        self,
        task_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
        bbox: Annotated[
            str | None, QueryParameter(max_length=200, description="min_x,min_y,max_x,max_y")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=20000)] = 5000,
    ) -> dict[str, Any]:
        task, _ = await TaskService(db_session).result(task_id, principal.user)
        box = parse_bbox(bbox)
        stmt = select(TaskFeature).where(TaskFeature.task_id == task.id)
        if box is not None:
            stmt = stmt.where(*overlapping(TaskFeature, box))
        rows = list(await db_session.scalars(stmt.order_by(TaskFeature.position).limit(limit + 1)))
        return {
            "type": "FeatureCollection",
            "features": [results.feature_out(r) for r in rows[:limit]],
            "truncated": len(rows) > limit,
        }

    @get(
        "/{task_id:uuid}/heatmap.png",
        opt=READ,
        summary="The per-patch probabilities of one class as an RGBA PNG (viewer overlay)",
        media_type="image/png",
    )
    async def task_heatmap(
        self,
        task_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
        class_name: Annotated[str | None, QueryParameter(name="class", max_length=100)] = None,
    ) -> Response[bytes]:
        _, found = await TaskService(db_session).result(task_id, principal.user)
        if found.heatmap is None or found.heatmap_meta is None:
            raise NotFound("this task's model makes no heatmap", code="no_heatmap")
        try:
            png = results.heatmap_png(found.heatmap, found.heatmap_meta, class_name)
        except KeyError:
            raise NotFound(f"the model has no class {class_name!r}", code="unknown_class") from None
        return Response(
            png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
        )


TASK_CONTROLLERS = [ModelController, TeamModelController, TaskController]

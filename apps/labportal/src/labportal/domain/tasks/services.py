"""Tasks as the API sees them: create (one per material), list, read, delete; access
follows the material's team (members and up write, viewers read, others get 404)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from labportal.domain.accounts.models import User
from labportal.domain.cases.services import CaseService
from labportal.domain.materials.models import Material
from labportal.domain.materials.services import MaterialService
from labportal.domain.tasks import catalog
from labportal.domain.tasks.models import AnalysisTask, TaskResult
from labportal.domain.tasks.schemas import TaskIn
from labportal.domain.teams.models import Membership
from labportal.domain.teams.roles import at_least
from labportal.errors import Conflict, Forbidden, NotFound, Unprocessable


class TaskNotFinished(Conflict):
    code = "task_not_finished"


@dataclass(frozen=True)
class TaskFilters:
    material_id: uuid.UUID | None = None
    case_id: uuid.UUID | None = None
    model: str | None = None
    status: str | None = None


class TaskService:
    def __init__(self, session: AsyncSession) -> None:
        self.db = session

    async def create(self, user: User, data: TaskIn) -> list[AnalysisTask]:
        """One queued task per material (the one named, or every uploaded one of the case)."""
        if data.material_id is not None:
            access = await MaterialService(session=self.db).access(data.material_id, user, "member")
            case, materials = access.case, [access.material]
            if access.material.blob_id is None:
                raise Unprocessable(
                    "the material has no slide yet (upload it first)", code="material_not_ready"
                )
        else:
            assert data.case_id is not None
            case, _ = await CaseService(session=self.db).writable(data.case_id, user)
            rows = await self.db.scalars(
                select(Material)
                .where(Material.case_id == case.id, Material.blob_id.is_not(None))
                .order_by(Material.created_at, Material.id)
            )
            materials = list(rows.unique())
            if not materials:
                raise Unprocessable("the case has no uploaded slide", code="material_not_ready")
        model = await catalog.resolve(self.db, case.team_id, data.model, data.model_version)
        params = model.check_params(data.params)
        tasks = []
        for material in materials:
            assert material.blob_id is not None
            task = AnalysisTask(
                team_id=case.team_id,
                case_id=case.id,
                material_id=material.id,
                blob_id=material.blob_id,
                model=model.name,
                model_version=model.version,
                model_sha256=model.sha256,
                registered_model_id=model.registered_id,
                params=params,
                status="queued",
                done=0,
                planned=0,
                attempts=0,
                created_by_id=user.id,
            )
            self.db.add(task)
            tasks.append(task)
        await self.db.flush()
        return tasks

    async def role_in(self, team_id: uuid.UUID, user: User) -> str | None:
        return await self.db.scalar(
            select(Membership.role).where(
                Membership.team_id == team_id, Membership.user_id == user.id
            )
        )

    async def get(self, task_id: uuid.UUID, user: User, minimum: str = "viewer") -> AnalysisTask:
        """A task of a team you are not in does not exist for you (404)."""
        task = await self.db.get(AnalysisTask, task_id)
        role = None if task is None else await self.role_in(task.team_id, user)
        if task is None or role is None:
            raise NotFound("no such task")
        if not at_least(role, minimum):
            raise Forbidden(f"this needs the {minimum} role in the team; you are {role}")
        return task

    async def page(
        self, user: User, filters: TaskFilters, limit: int, offset: int
    ) -> tuple[list[AnalysisTask], int]:
        """The caller's teams' tasks, newest first."""
        teams = select(Membership.team_id).where(Membership.user_id == user.id)
        where: list[Any] = [AnalysisTask.team_id.in_(teams)]
        if filters.material_id is not None:
            where.append(AnalysisTask.material_id == filters.material_id)
        if filters.case_id is not None:
            where.append(AnalysisTask.case_id == filters.case_id)
        if filters.model:
            where.append(AnalysisTask.model == filters.model)
        if filters.status:
            where.append(AnalysisTask.status == filters.status)
        total = await self.db.scalar(select(func.count()).select_from(AnalysisTask).where(*where))
        rows = await self.db.scalars(
            select(AnalysisTask)
            .where(*where)
            .order_by(AnalysisTask.created_at.desc(), AnalysisTask.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return list(rows), int(total or 0)

    async def delete(self, task_id: uuid.UUID, user: User) -> None:
        """Gone with its results; a runner that has it on Dask notices at its next
        progress report or lease renewal and cancels the run's futures."""
        task = await self.get(task_id, user, "member")
        await self.db.execute(delete(AnalysisTask).where(AnalysisTask.id == task.id))

    async def result(self, task_id: uuid.UUID, user: User) -> tuple[AnalysisTask, TaskResult]:
        task = await self.get(task_id, user)
        if task.status != "succeeded":
            raise TaskNotFinished(f"the task is {task.status}, not succeeded")
        found = await self.db.scalar(select(TaskResult).where(TaskResult.task_id == task.id))
        if found is None:  # a succeeded task always has one; never pass a missing one on
            raise TaskNotFinished("the task's result is not stored")
        return task, found

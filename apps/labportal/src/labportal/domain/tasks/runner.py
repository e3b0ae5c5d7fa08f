"""The task runner: claims queued tasks from the database, runs them on Dask, records
progress, and stores each result once.

The task table is the queue and the durable truth. A runner claims a task with one
``UPDATE ... WHERE id = (SELECT ... LIMIT 1 [FOR UPDATE SKIP LOCKED]) RETURNING id``: on
PostgreSQL the row lock lets runners pass each other by, on SQLite the statement runs
under the database's write lock; either way exactly one runner gets it, with a lease it
renews while the run lasts. A runner that dies (kill -9) stops renewing; when the lease
runs out the task is claimable again and runs from the start. The result is written in
the transaction that marks the task ``succeeded`` and only while the lease is still
this runner's, so a task's result exists once, or not at all (a failed, cancelled or
deleted task never shows one).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from labportal import cluster
from labportal.db.base import utcnow
from labportal.domain.tasks import catalog, results
from labportal.domain.tasks.dask_engine import DaskEngine
from labportal.domain.tasks.models import AnalysisTask, RegisteredModel, TaskFeature, TaskResult
from labportal.errors import Problem
from labportal.settings import Settings
from slidestore.errors import SlidestoreError

log = logging.getLogger("labportal.tasks")
PROGRESS_EVERY = 0.5
"""Seconds between progress writes while tiles finish."""


class Stopped(Exception):
    """The run was stopped: its task was deleted, its lease lost, or it ran too long."""


@dataclass
class Live:
    """What the engine thread and the runner's heartbeat share about one run."""

    done: int = 0
    planned: int = 0
    stop: str = ""
    """Why the run must stop ("" while it may go on)."""

    def __call__(self, done: int, planned: int) -> None:
        self.done, self.planned = done, planned
        if self.stop:
            raise Stopped(self.stop)


@dataclass(frozen=True)
class Claimed:
    id: uuid.UUID
    blob_id: str
    model: catalog.ModelRef
    params: dict[str, Any]


@dataclass
class TaskRunner:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    engine: DaskEngine
    name: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    )

    def __post_init__(self) -> None:
        self.postgres = not self.settings.is_sqlite
        self.lease = datetime.timedelta(seconds=self.settings.task_lease_seconds)
        self._wake = asyncio.Event()
        self._stopping = False
        self._active: dict[uuid.UUID, Live] = {}
        self._runs: set[asyncio.Task[None]] = set()

    # -- the loop ----------------------------------------------------------------------------

    def wake(self) -> None:
        """Look for queued tasks now (the API calls it after creating some)."""
        self._wake.set()

    async def serve(self) -> None:
        """Claim and run tasks until :meth:`stop`."""
        while not self._stopping:
            try:
                while len(self._active) < self.settings.task_concurrency and not self._stopping:
                    claimed = await self.claim()
                    if claimed is None:
                        break
                    self._start(claimed)
            except Exception:
                log.exception("claiming a task failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.task_poll_seconds):
                    await self._wake.wait()
            self._wake.clear()

    def _start(self, claimed: Claimed) -> None:
        live = Live()
        self._active[claimed.id] = live
        run = asyncio.create_task(self._execute(claimed, live))
        self._runs.add(run)

        def finished(task: asyncio.Task[None]) -> None:
            self._runs.discard(task)
            self._active.pop(claimed.id, None)
            self._wake.set()

        run.add_done_callback(finished)

    async def stop(self) -> None:
        """Stop claiming; runs in progress stop and their tasks go back to the queue."""
        self._stopping = True
        self._wake.set()
        for live in self._active.values():
            live.stop = "the runner stopped"
        if self._runs:
            await asyncio.wait(self._runs, timeout=30)

    # -- claiming ----------------------------------------------------------------------------

    def _claimable(self, now: datetime.datetime) -> Any:
        return or_(
            AnalysisTask.status == "queued",
            and_(AnalysisTask.status == "running", AnalysisTask.lease_expires_at < now),
        )

    async def claim(self) -> Claimed | None:
        """One task, claimed by this runner alone (None: nothing to do)."""
        now = utcnow()
        candidate = (
            select(AnalysisTask.id)
            .where(self._claimable(now))
            .order_by(AnalysisTask.created_at, AnalysisTask.id)
            .limit(1)
        )
        if self.postgres:
            candidate = candidate.with_for_update(skip_locked=True)
        async with self.sessions() as db, db.begin():
            task_id = await db.scalar(
                update(AnalysisTask)
                .where(AnalysisTask.id == candidate.scalar_subquery(), self._claimable(now))
                .values(
                    status="running",
                    lease_owner=self.name,
                    lease_expires_at=now + self.lease,
                    started_at=now,
                    attempts=AnalysisTask.attempts + 1,
                    done=0,
                    error=None,
                )
                .returning(AnalysisTask.id)
                .execution_options(synchronize_session=False)
            )
            if task_id is None:
                return None
            task = await db.get_one(AnalysisTask, task_id)
            if task.registered_model_id is not None:
                row = await db.get(RegisteredModel, task.registered_model_id)
                model = catalog.registered_ref(row) if row is not None else None
            else:
                model = catalog.ModelRef(task.model, task.model_version, "")
            claimed = Claimed(task.id, task.blob_id, model, dict(task.params)) if model else None
        if claimed is None:
            await self._finish_failed(task_id, "the registered model was deleted")
            return None
        log.info("task claimed", extra={"fields": {"task": str(task_id), "runner": self.name}})
        return claimed

    # -- running -----------------------------------------------------------------------------

    def _run_blocking(self, claimed: Claimed, live: Live) -> Any:
        from slidestore import analysis

        dask = self.engine.client()
        params = claimed.model.engine_params(claimed.params, self.settings.models_dir)
        subject = f"labportal-task-{claimed.id}"
        with cluster.open_for_task(self.settings, claimed.blob_id, subject) as slide:
            return analysis.run(
                claimed.model.engine_model, slide, params, client=dask, progress=live
            )

    async def _execute(self, claimed: Claimed, live: Live) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(claimed.id, live))
        try:
            result = await asyncio.to_thread(self._run_blocking, claimed, live)
        except Stopped as exc:
            await self._stopped(claimed.id, str(exc))
        except (SlidestoreError, Problem) as exc:
            await self._finish_failed(claimed.id, str(exc))
        except Exception as exc:
            log.exception("task %s raised", claimed.id)
            await self._finish_failed(claimed.id, f"{type(exc).__name__}: {exc}")
        else:
            await self._finish_ok(claimed.id, live, result)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _heartbeat(self, task_id: uuid.UUID, live: Live) -> None:
        """Progress and the lease, renewed; a deleted task or a lost lease stops the run."""
        started = time.monotonic()
        renew = min(PROGRESS_EVERY, self.settings.task_lease_seconds / 3)
        last: tuple[int, int] | None = None
        last_renewed = 0.0
        while not live.stop:
            await asyncio.sleep(renew)
            if time.monotonic() - started > self.settings.task_timeout_seconds:
                live.stop = f"the run took longer than {self.settings.task_timeout_seconds} s"
                break
            now = time.monotonic()
            if (
                live.done,
                live.planned,
            ) == last and now - last_renewed < self.lease.total_seconds() / 3:
                continue
            last, last_renewed = (live.done, live.planned), now
            try:
                async with self.sessions() as db, db.begin():
                    kept = await db.execute(
                        update(AnalysisTask)
                        .where(*self._mine(task_id))
                        .values(
                            done=live.done,
                            planned=live.planned,
                            lease_expires_at=utcnow() + self.lease,
                        )
                        .execution_options(synchronize_session=False)
                    )
            except Exception:
                log.exception("renewing the lease of %s failed", task_id)
                continue
            if kept.rowcount != 1:  # type: ignore[attr-defined]
                live.stop = "the task was deleted"

    def _mine(self, task_id: uuid.UUID) -> list[Any]:
        return [
            AnalysisTask.id == task_id,
            AnalysisTask.lease_owner == self.name,
            AnalysisTask.status == "running",
        ]

    async def _finish_ok(self, task_id: uuid.UUID, live: Live, result: Any) -> None:
        stored = await asyncio.to_thread(results.to_rows, task_id, result)
        async with self.sessions() as db, db.begin():
            marked = await db.execute(
                update(AnalysisTask)
                .where(*self._mine(task_id))
                .values(
                    status="succeeded",
                    finished_at=utcnow(),
                    done=live.done,
                    planned=live.planned,
                    lease_owner=None,
                    lease_expires_at=None,
                )
                .execution_options(synchronize_session=False)
            )
            if marked.rowcount != 1:  # type: ignore[attr-defined]
                log.info("task %s is gone or no longer ours: result dropped", task_id)
                await db.rollback()
                return
            # Idempotent by task id: whatever an earlier attempt left is replaced.
            await db.execute(delete(TaskFeature).where(TaskFeature.task_id == task_id))
            await db.execute(delete(TaskResult).where(TaskResult.task_id == task_id))
            db.add(stored.result)
            if stored.features:
                await db.execute(insert(TaskFeature), stored.features)
        log.info("task succeeded", extra={"fields": {"task": str(task_id)}})

    async def _finish_failed(self, task_id: uuid.UUID, message: str) -> None:
        async with self.sessions() as db, db.begin():
            await db.execute(
                update(AnalysisTask)
                .where(*self._mine(task_id))
                .values(
                    status="failed",
                    error=message[:4000],
                    finished_at=utcnow(),
                    lease_owner=None,
                    lease_expires_at=None,
                )
                .execution_options(synchronize_session=False)
            )
        log.info("task failed", extra={"fields": {"task": str(task_id), "error": message}})

    async def _stopped(self, task_id: uuid.UUID, reason: str) -> None:
        """A deleted task is gone already; one stopped by a shutdown goes back to the
        queue; one that ran too long fails."""
        if reason == "the runner stopped":
            async with self.sessions() as db, db.begin():
                await db.execute(
                    update(AnalysisTask)
                    .where(*self._mine(task_id))
                    .values(status="queued", lease_owner=None, lease_expires_at=None)
                    .execution_options(synchronize_session=False)
                )
        elif reason != "the task was deleted":
            await self._finish_failed(task_id, reason)

"""``labportal worker`` processes: one killed with SIGKILL in the middle of a task; after
another starts, the task completes, once (one result, its features stored once)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import func, select

from labportal.domain.tasks.models import AnalysisTask, TaskFeature, TaskResult

from .conftest import REAL_CLUSTER_SECRET
from .helpers import Portal
from .tasks_kit import build_onnx, lab, manifest, register, task_settings, wait_for

pytestmark = pytest.mark.asyncio
LEASE = 4


@pytest_asyncio.fixture
async def queue_portal(
    database_url: str, real_cluster: str, tmp_path: Path
) -> AsyncIterator[Portal]:
    settings = task_settings(
        database_url, real_cluster, "", task_runner=False, models_dir=str(tmp_path / "models")
    )
    async with Portal.running(settings) as running:
        yield running


def start_worker(portal: Portal, scheduler: str, log: Path) -> subprocess.Popen[bytes]:
    settings = portal.settings
    env = {
        **os.environ,
        "LABPORTAL_DATABASE_URL": settings.database_url,
        "LABPORTAL_CLUSTER_URL": settings.cluster_url,
        "LABPORTAL_CLUSTER_SECRET": REAL_CLUSTER_SECRET,
        "LABPORTAL_DASK_SCHEDULER": scheduler,
        "LABPORTAL_TASK_LEASE_SECONDS": str(LEASE),
        "LABPORTAL_TASK_POLL_SECONDS": "0.2",
        "LABPORTAL_MODELS_DIR": settings.models_dir,
        "LABPORTAL_LOG_LEVEL": "INFO",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "labportal.cli", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def until_running(
    portal: Portal, user: object, task: str, worker: subprocess.Popen[bytes], log: Path
) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise AssertionError(f"worker exited: {log.read_text()[-3000:]}")
        status = (await user.get(f"/api/tasks/{task}")).json()["status"]  # type: ignore[attr-defined]
        if status != "queued":
            return str(status)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no worker claimed the task: {log.read_text()[-3000:]}")


async def test_a_task_survives_a_killed_worker_and_completes_once(
    queue_portal: Portal,
    dask_scheduler: str,
    sample_slide_path: Path,
    sample_blob: str,
    tmp_path: Path,
) -> None:
    mine = await lab(queue_portal, sample_slide_path, sample_blob)
    # 8-pixel patches at the slide's own resolution, one at a time: some seconds of work.
    slow = build_onnx(tmp_path / "slow.onnx", patch=8)
    registered = await register(
        mine.owner, mine.team, slow, manifest("slow", patch_size=8, target_mpp=0.5)
    )
    assert registered.status_code == 201, registered.text
    log = tmp_path / "workers.log"
    for _ in range(3):  # if the first worker finishes before the kill, try a new task
        created = await mine.owner.post(
            "/api/tasks",
            json={"material_id": mine.material, "model": "slow", "params": {"batch_size": 1}},
        )
        task = created.json()["items"][0]["id"]
        first = start_worker(queue_portal, dask_scheduler, log)
        try:
            status = await until_running(queue_portal, mine.owner, task, first, log)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        after = (await mine.owner.get(f"/api/tasks/{task}")).json()
        if status == "running" and after["status"] == "running":
            break
    else:
        pytest.fail("the worker finished every task before it could be killed")

    second = start_worker(queue_portal, dask_scheduler, log)
    try:
        done = await wait_for(mine.owner, task, timeout=180)
    finally:
        second.terminate()
        second.wait(30)
    assert done["status"] == "succeeded", (done, log.read_text()[-3000:])
    result = (await mine.owner.get(f"/api/tasks/{task}/result")).json()
    async with queue_portal.session() as db:
        row = await db.get(AnalysisTask, uuid.UUID(task))
        assert row is not None and row.attempts == 2 and row.lease_owner is None
        results = await db.scalar(
            select(func.count()).select_from(TaskResult).where(TaskResult.task_id == row.id)
        )
        features = await db.scalar(
            select(func.count()).select_from(TaskFeature).where(TaskFeature.task_id == row.id)
        )
    assert results == 1
    assert features == result["feature_count"]
    assert result["summary"]["patches"] > 100_000  # the whole slide, not a partial run

"""Registered ONNX models (content-addressed, manifest and graph checked, versioned) run
as tasks with a heatmap; a model that raises fails its task with the message and leaves
no result; /readyz reports the Dask scheduler and its workers."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from .helpers import Portal, problem
from .tasks_kit import CLASSES, build_onnx, lab, manifest, register, wait_for

pytestmark = pytest.mark.asyncio


async def test_register_onnx_models_and_run_one(
    tportal: Portal, sample_slide_path: Path, sample_blob: str, tmp_path: Path
) -> None:
    mine = await lab(tportal, sample_slide_path, sample_blob)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a network at all" * 10)
    refused = problem(await register(mine.owner, mine.team, junk, manifest()), 422)
    assert refused["code"] == "invalid_model" and "not an ONNX model" in refused["detail"]
    wide = build_onnx(tmp_path / "wide.onnx", patch=64)
    misfit = problem(await register(mine.owner, mine.team, wide, manifest()), 422)
    assert "(batch, 3, 32, 32)" in misfit["detail"]
    bad_manifest = await register(mine.owner, mine.team, wide, '{"name": "x"}')
    assert problem(bad_manifest, 422)["code"] == "invalid_manifest"

    model = build_onnx(tmp_path / "tiny.onnx")
    first = await register(mine.owner, mine.team, model, manifest())
    assert first.status_code == 201, first.text
    out = first.json()
    assert out["kind"] == "onnx" and out["team_id"] == mine.team and len(out["sha256"]) == 64
    assert out["input"] == {"target_mpp": 2.0, "level": None, "tile_size": 1024, "overlap": 0}
    assert (
        "heatmap" in out["outputs"]
        and "threshold" in out["params_schema"]["$defs"]["RegisteredParams"]["properties"]
    )
    again = await register(mine.owner, mine.team, model, manifest(version="2"))
    assert again.status_code == 201 and again.json()["sha256"] == out["sha256"]
    stored = list(Path(tportal.settings.models_dir).glob("*.onnx"))
    assert [p.name for p in stored] == [f"{out['sha256']}.onnx"]  # one file for both
    other = build_onnx(tmp_path / "other.onnx", hide_classes=True)
    clash = await register(mine.owner, mine.team, other, manifest())
    assert problem(clash, 409)["code"] == "model_version_exists"

    created = await mine.owner.post(
        "/api/tasks",
        json={
            "material_id": mine.material,
            "model": "tiny",
            "model_version": "1",
            "params": {"threshold": 0.3},
        },
    )
    assert created.status_code == 201, created.text
    task = created.json()["items"][0]
    assert task["model_sha256"] == out["sha256"] and task["params"]["threshold"] == 0.3
    done = await wait_for(mine.owner, task["id"])
    assert done["status"] == "succeeded", done
    assert (
        done["progress"]["planned"] >= 1 and done["progress"]["done"] == done["progress"]["planned"]
    )
    result = (await mine.owner.get(f"/api/tasks/{task['id']}/result")).json()
    heatmap = result["heatmap"]
    assert (
        heatmap["classes"] == CLASSES and heatmap["url"] == f"/api/tasks/{task['id']}/heatmap.png"
    )
    assert heatmap["width"] >= 2220 and heatmap["height"] >= 2967  # covers the slide
    assert result["summary"]["patches"] > 0
    png = await mine.owner.get(heatmap["url"], params={"class": "stroma"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    rows, cols = result["summary"]["heatmap"]["shape"][:2]
    assert image.mode == "RGBA" and image.size == (cols, rows)
    assert max(image.getchannel("A").getdata()) > 0  # probabilities drawn as alpha
    unknown = await mine.owner.get(heatmap["url"], params={"class": "bone"})
    assert problem(unknown, 404)["code"] == "unknown_class"


async def test_a_model_that_raises_fails_its_task_without_a_result(
    tportal: Portal, sample_slide_path: Path, sample_blob: str, tmp_path: Path
) -> None:
    """The graph's output shape is known only when it runs (3 values a patch); the
    manifest names 2 classes: registration cannot tell, the run raises on a tile."""
    mine = await lab(tportal, sample_slide_path, sample_blob)
    liar = build_onnx(tmp_path / "liar.onnx", classes=3, hide_classes=True)
    assert (await register(mine.owner, mine.team, liar, manifest("liar"))).status_code == 201
    created = await mine.owner.post(
        "/api/tasks", json={"material_id": mine.material, "model": "liar"}
    )
    task = created.json()["items"][0]["id"]
    done = await wait_for(mine.owner, task)
    assert done["status"] == "failed" and done["finished_at"]
    assert "the model returned shape" in done["error"] and "tile" in done["error"]
    for route in ("/result", "/features", "/heatmap.png"):
        assert problem(await mine.owner.get(f"/api/tasks/{task}{route}"), 409)["code"] == (
            "task_not_finished"
        )


async def test_readyz_reports_the_dask_scheduler_and_its_workers(
    tportal: Portal, dask_scheduler: str
) -> None:
    client = tportal.client()
    for _ in range(100):  # the engine connects in the background at startup
        ready = await client.get("/readyz")
        if ready.json()["checks"].get("dask") == "ok":
            break
        import asyncio

        await asyncio.sleep(0.1)
    body = ready.json()
    assert ready.status_code == 200, body
    assert body["checks"]["dask"] == "ok"
    assert body["dask"] == {"scheduler": dask_scheduler, "workers": 1}


async def test_deleting_a_running_task_cancels_its_dask_work(
    tportal: Portal, sample_slide_path: Path, sample_blob: str, tmp_path: Path, dask_scheduler: str
) -> None:
    import asyncio
    import uuid

    from distributed import Client
    from sqlalchemy import func, select

    from labportal.domain.tasks.models import TaskResult

    mine = await lab(tportal, sample_slide_path, sample_blob)
    slow = build_onnx(tmp_path / "slow.onnx", patch=8)
    registered = await register(
        mine.owner, mine.team, slow, manifest("slow", patch_size=8, target_mpp=0.5)
    )
    assert registered.status_code == 201, registered.text
    created = await mine.owner.post(
        "/api/tasks",
        json={"material_id": mine.material, "model": "slow", "params": {"batch_size": 1}},
    )
    task = created.json()["items"][0]["id"]
    for _ in range(1200):
        body = (await mine.owner.get(f"/api/tasks/{task}")).json()
        if body["status"] == "running" and body["progress"]["planned"] > 0:
            break
        assert body["status"] in ("queued", "running"), body
        await asyncio.sleep(0.05)
    assert body["progress"]["done"] < body["progress"]["planned"], body  # mid-run
    assert (await mine.owner.delete(f"/api/tasks/{task}")).status_code == 204
    problem(await mine.owner.get(f"/api/tasks/{task}"), 404)

    def scheduler_tasks() -> int:
        with Client(dask_scheduler, set_as_default=False) as client:
            return int(client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)))

    runner = tportal.app.state.runner
    for _ in range(600):  # the runner notices at its next progress report or renewal
        if not runner._active and await asyncio.to_thread(scheduler_tasks) == 0:
            break
        await asyncio.sleep(0.1)
    assert not runner._active, "the run did not stop"
    assert await asyncio.to_thread(scheduler_tasks) == 0, "Dask still holds the run's tasks"
    async with tportal.session() as db:
        left = await db.scalar(
            select(func.count())
            .select_from(TaskResult)
            .where(TaskResult.task_id == uuid.UUID(task))
        )
    assert left == 0

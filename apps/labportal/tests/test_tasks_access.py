"""Who may do what with tasks and models, what a task request must say, and that a task
is claimed by exactly one runner (two runners racing on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from labportal.db.engine import create_engine
from labportal.domain.tasks.dask_engine import DaskEngine
from labportal.domain.tasks.models import AnalysisTask
from labportal.domain.tasks.runner import TaskRunner

from .helpers import PASSWORD, Portal, problem
from .tasks_kit import build_onnx, lab, link_material, manifest, register, task_settings

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def qportal(database_url: str, real_cluster: str, tmp_path: Path) -> AsyncIterator[Portal]:
    """A portal that queues tasks but runs none (no runner, no Dask)."""
    settings = task_settings(
        database_url, real_cluster, "", task_runner=False, models_dir=str(tmp_path / "models")
    )
    async with Portal.running(settings) as running:
        yield running


async def test_roles_teams_and_token_scopes(
    qportal: Portal, sample_slide_path: Path, sample_blob: str, tmp_path: Path
) -> None:
    mine = await lab(qportal, sample_slide_path, sample_blob)
    viewer, member, outsider = (
        await qportal.user("viewer"),
        await qportal.user("member"),
        await qportal.user("outsider"),
    )
    await qportal.join(mine.owner, mine.team, viewer, "viewer")
    await qportal.join(mine.owner, mine.team, member, "member")
    body = {"material_id": mine.material, "model": "tissue"}

    refused = await viewer.post("/api/tasks", json=body)
    assert problem(refused, 403)["code"] == "forbidden"
    created = await member.post("/api/tasks", json=body)
    assert created.status_code == 201, created.text
    task = created.json()["items"][0]["id"]
    assert (await viewer.get(f"/api/tasks/{task}")).status_code == 200
    problem(await viewer.delete(f"/api/tasks/{task}"), 403)

    # Another team: every task route and the material answer 404, the lists are empty.
    for route in ("", "/input", "/result", "/features", "/heatmap.png"):
        problem(await outsider.get(f"/api/tasks/{task}{route}"), 404)
    problem(await outsider.delete(f"/api/tasks/{task}"), 404)
    problem(await outsider.post("/api/tasks", json=body), 404)
    problem(await outsider.post("/api/tasks", json={"case_id": mine.case, "model": "tissue"}), 404)
    assert (await outsider.get("/api/tasks")).json()["total"] == 0

    # A registered model is the team's: others neither see nor register in it.
    model = build_onnx(tmp_path / "tiny.onnx")
    assert (await register(mine.owner, mine.team, model, manifest())).status_code == 201
    listed = (await viewer.get("/api/models", params={"team_id": mine.team})).json()["items"]
    assert "tiny" in {m["name"] for m in listed}
    problem(await outsider.get("/api/models", params={"team_id": mine.team}), 404)
    assert "tiny" not in {m["name"] for m in (await outsider.get("/api/models")).json()["items"]}
    problem(await register(outsider, mine.team, model, manifest(version="2")), 404)
    problem(await register(member, mine.team, model, manifest(version="2")), 403)
    other = await lab(qportal, sample_slide_path, sample_blob, "other")
    problem(
        await other.owner.post("/api/tasks", json={"material_id": other.material, "model": "tiny"}),
        404,
    )

    # A script token with the read scope reads tasks and creates none.
    script = qportal.client()
    issued = await script.post(
        "/api/auth/token",
        json={"email": mine.owner.email, "password": PASSWORD, "scopes": ["cases:read"]},
    )
    assert issued.status_code == 201, issued.text
    script.headers["Authorization"] = f"Bearer {issued.json()['token']}"
    assert (await script.get(f"/api/tasks/{task}")).status_code == 200
    denied = await script.post("/api/tasks", json=body)
    assert problem(denied, 403)["code"] == "insufficient_scope"
    problem(await script.delete(f"/api/tasks/{task}"), 403)
    wrong = await qportal.client().post(
        "/api/auth/token", json={"email": mine.owner.email, "password": "not the password"}
    )
    assert problem(wrong, 401)["code"] == "invalid_credentials"
    assert (await member.delete(f"/api/tasks/{task}")).status_code == 204


async def test_what_a_task_request_must_say(
    qportal: Portal, sample_slide_path: Path, sample_blob: str
) -> None:
    mine = await lab(qportal, sample_slide_path, sample_blob)
    second = await link_material(mine.owner, mine.case, sample_slide_path, sample_blob)
    post = mine.owner.post

    bad = await post(
        "/api/tasks",
        json={"material_id": mine.material, "model": "tissue", "params": {"min_area_um2": "big"}},
    )
    body = problem(bad, 422)
    assert body["code"] == "bad_params" and "$.min_area_um2" in body["detail"]
    unknown = await post("/api/tasks", json={"material_id": mine.material, "model": "nope"})
    assert problem(unknown, 404)["code"] == "unknown_model"
    hidden = await post("/api/tasks", json={"material_id": mine.material, "model": "onnx"})
    assert problem(hidden, 404)["code"] == "unknown_model"  # it would read a server path
    version = await post(
        "/api/tasks",
        json={"material_id": mine.material, "model": "tissue", "model_version": "99"},
    )
    assert problem(version, 404)["code"] == "unknown_model"
    both = await post(
        "/api/tasks", json={"material_id": mine.material, "case_id": mine.case, "model": "qc"}
    )
    assert both.status_code in (400, 422)

    per_case = await post("/api/tasks", json={"case_id": mine.case, "model": "qc"})
    assert per_case.status_code == 201, per_case.text
    items = per_case.json()["items"]
    assert {i["material_id"] for i in items} == {mine.material, second}
    assert all(i["status"] == "queued" and i["case_id"] == mine.case for i in items)
    listed = (await mine.owner.get("/api/tasks", params={"case_id": mine.case, "limit": 1})).json()
    assert listed["total"] == 2 and len(listed["items"]) == 1 and listed["limit"] == 1
    models = (await mine.owner.get("/api/models")).json()["items"]
    names = {m["name"] for m in models}
    assert {"tissue", "qc", "nuclei"} <= names and "onnx" not in names
    tissue = next(m for m in models if m["name"] == "tissue")
    assert tissue["kind"] == "builtin" and tissue["params_schema"]
    assert tissue["input"]["tile_size"] > 0 and "features" in tissue["outputs"]
    for item in items:
        assert (await mine.owner.delete(f"/api/tasks/{item['id']}")).status_code == 204


async def test_each_task_is_claimed_by_exactly_one_runner(
    qportal: Portal, sample_slide_path: Path, sample_blob: str
) -> None:
    mine = await lab(qportal, sample_slide_path, sample_blob)
    ids = set()
    for _ in range(12):
        made = await mine.owner.post(
            "/api/tasks", json={"material_id": mine.material, "model": "tissue"}
        )
        ids.add(made.json()["items"][0]["id"])
    settings = qportal.settings.replace(task_lease_seconds=60)
    database = create_engine(settings.database_url)
    sessions = async_sessionmaker(database, expire_on_commit=False)
    runners = [TaskRunner(settings, sessions, DaskEngine(settings)) for _ in range(3)]
    claims: dict[str, list[str]] = {r.name: [] for r in runners}

    async def drain(runner: TaskRunner) -> None:
        while (claimed := await runner.claim()) is not None:
            claims[runner.name].append(str(claimed.id))

    try:
        await asyncio.gather(*(drain(r) for r in runners))
        every = [t for got in claims.values() for t in got]
        assert len(every) == len(set(every)), claims  # none twice
        assert ids <= set(every)  # all of ours (other tests' queued tasks may be there too)
        # A lease that ran out (its runner died): the task is claimed once more, by one.
        victim = sorted(ids)[0]
        victim_id = uuid.UUID(victim)
        async with sessions() as db, db.begin():
            past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
            await db.execute(
                update(AnalysisTask)
                .where(AnalysisTask.id == victim_id)
                .values(lease_expires_at=past)
            )
        again = await asyncio.gather(*(r.claim() for r in runners))
        assert [str(c.id) for c in again if c is not None] == [victim]
        async with sessions() as db:
            row = await db.scalar(select(AnalysisTask).where(AnalysisTask.id == victim_id))
            assert row is not None and row.attempts == 2 and row.status == "running"
    finally:
        for task in ids:
            await mine.owner.delete(f"/api/tasks/{task}")
        await database.dispose()


async def test_a_task_reads_its_slide_with_read_on_that_blob_alone() -> None:
    import time

    from labportal.cluster import task_token
    from labportal.settings import Settings
    from slidestore import tokens
    from slidestore.errors import Forbidden
    from slidestore.tokens import Operation

    secret = tokens.new_secret()
    settings = Settings(cluster_secret=secret, task_timeout_seconds=600)
    blob = "a" * 64
    grant = tokens.verify(secret, task_token(settings, blob, "labportal-task-x"))
    grant.require(Operation.READ, blob)
    assert grant.ops == {Operation.READ} and grant.sub == "labportal-task-x"
    assert grant.exp <= time.time() + 601  # no longer than the task may run (+ rounding)
    with pytest.raises(Forbidden):
        grant.require(Operation.READ, "b" * 64)  # another blob
    with pytest.raises(Forbidden):
        grant.require(Operation.DOWNLOAD, blob)  # the next wider use: the whole file

"""The task API end to end: a real portal (SQLite and PostgreSQL) runs models on a real
Dask scheduler over the sample slide stored in a real coordinator and node."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from .helpers import PASSWORD, Portal, problem
from .tasks_kit import lab, wait_for

pytestmark = pytest.mark.asyncio


async def test_tissue_task_through_a_script_token(
    tportal: Portal, sample_slide_path: Path, sample_blob: str
) -> None:
    mine = await lab(tportal, sample_slide_path, sample_blob)
    script = tportal.client()
    issued = await script.post(
        "/api/auth/token",
        json={
            "email": mine.owner.email,
            "password": PASSWORD,
            "scopes": ["cases:write", "cases:read"],
        },
    )
    assert issued.status_code == 201, issued.text
    grant = issued.json()
    assert grant["token_type"] == "bearer" and grant["scopes"] == ["cases:read", "cases:write"]
    script.headers["Authorization"] = f"Bearer {grant['token']}"

    created = await script.post(
        "/api/tasks", json={"material_id": mine.material, "model": "tissue"}
    )
    assert created.status_code == 201, created.text
    (task,) = created.json()["items"]
    assert task["status"] == "queued" and task["model"] == "tissue" and task["error"] is None
    assert task["params"]["min_area_um2"] == 10_000.0  # the defaults are recorded
    done = await wait_for(mine.owner, task["id"])
    assert done["status"] == "succeeded", done
    assert done["progress"]["done"] == done["progress"]["planned"] >= 1
    assert done["started_at"] and done["finished_at"] >= done["started_at"]

    result = (await script.get(f"/api/tasks/{task['id']}/result")).json()
    assert result["provenance"]["model"]["name"] == "tissue"
    assert result["provenance"]["slide"]["sha256"] == sample_blob
    assert 0 < result["summary"]["tissue_fraction"] < 1
    assert result["feature_count"] >= 1 and result["heatmap"] is None
    given = (await script.get(f"/api/tasks/{task['id']}/input")).json()
    assert given["blob_sha256"] == sample_blob and given["material_id"] == mine.material

    everything = (await script.get(f"/api/tasks/{task['id']}/features")).json()
    assert len(everything["features"]) == result["feature_count"]
    props = everything["features"][0]["properties"]
    assert {"class", "score", "measurements"} <= set(props)
    outside = await script.get(
        f"/api/tasks/{task['id']}/features", params={"bbox": "1e7,1e7,2e7,2e7"}
    )
    assert outside.json()["features"] == []
    geojson = (
        await script.get(f"/api/tasks/{task['id']}/result", params={"format": "geojson"})
    ).json()
    assert geojson["type"] == "FeatureCollection"
    assert len(geojson["features"]) == result["feature_count"]
    parquet = await script.get(f"/api/tasks/{task['id']}/result", params={"format": "parquet"})
    assert parquet.headers["content-type"].startswith("application/vnd.apache.parquet")
    table = pq.read_table(io.BytesIO(parquet.content))
    assert b"slidestore.provenance" in (table.schema.metadata or {})

    listed = (await script.get("/api/tasks", params={"material_id": mine.material})).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == task["id"]
    assert (await script.get("/api/tasks", params={"status": "failed"})).json()["total"] == 0

    # Results survive a restart: another portal process on the same database serves them.
    async with Portal.running(tportal.settings.replace(task_runner=False)) as restarted:
        again = restarted.client()
        again.headers["Authorization"] = script.headers["Authorization"]
        kept = (await again.get(f"/api/tasks/{task['id']}/result")).json()
        assert kept["summary"] == result["summary"] and kept["provenance"] == result["provenance"]
        features = (await again.get(f"/api/tasks/{task['id']}/features")).json()["features"]
        assert features == everything["features"]

    assert (await script.delete(f"/api/tasks/{task['id']}")).status_code == 204
    problem(await script.get(f"/api/tasks/{task['id']}"), 404)
    problem(await script.get(f"/api/tasks/{task['id']}/features"), 404)

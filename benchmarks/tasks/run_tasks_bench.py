"""``nox -s tasks_bench``: the task API end to end, against real processes.

A coordinator and a storage node hold the sample slide; the portal runs as
``labportal serve`` (SQLite) with its default task runner and embedded Dask
LocalCluster. Through the HTTP API only:

1. POST a ``tissue`` task on the sample slide -> ``succeeded`` (goal < 3 s), a few times,
   beside the baseline measured in the same run: the library's own
   ``analysis.run("tissue", remote slide)`` on a LocalCluster in this process.
2. 100 tasks queued at once: all succeed, none ran twice (each task's ``attempts`` and
   the result rows, read from the portal's database), and the portal stays responsive:
   p50/p99 of ``GET /api/tasks/{id}`` during the burst, beside the same figure idle.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

import slidestore
from labportal.domain.materials.possession import Challenge, answer_from_file
from slidestore import tokens
from slidestore.testing.fixtures import _shared_file  # type: ignore[attr-defined]
from slidestore.testing.paths import SAMPLE_SLIDE_NAME
from slidestore.testing.ports import free_port
from slidestore.tokens import Operation
from slidestore_server.testing import CoordinatorProcess, NodeProcess

BURST = int(os.environ.get("LABPORTAL_BENCH_TASKS", "100"))
PASSWORD = "benchmark password 1"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_portal(root: Path, cluster_url: str, secret: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "LABPORTAL_DATABASE_URL": f"sqlite:///{root / 'portal.sqlite3'}",
        "LABPORTAL_CLUSTER_URL": cluster_url,
        "LABPORTAL_CLUSTER_SECRET": secret,
        "LABPORTAL_MODELS_DIR": str(root / "models"),
        "LABPORTAL_REGISTER_MAX_PER_ADDRESS": "1000",
        "LABPORTAL_TASK_POLL_SECONDS": "0.5",
        "LABPORTAL_LOG_LEVEL": "WARNING",
    }
    log = (root / "portal.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "labportal.cli", "serve", "--migrate", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"portal exited: {(root / 'portal.log').read_text()[-2000:]}")
        try:
            ready = httpx.get(url + "/readyz", timeout=2)
            if ready.status_code == 200:
                print(f"  portal ready: {ready.json()['dask']}", flush=True)
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise SystemExit("the portal never became ready")


async def seed(url: str, slide: Path, blob: str) -> tuple[httpx.AsyncClient, str]:
    client = httpx.AsyncClient(base_url=url, timeout=60)
    email = f"bench-{random.randrange(1 << 30)}@example.org"
    body = {"email": email, "password": PASSWORD, "display_name": "Bench"}
    assert (await client.post("/api/auth/register", json=body)).status_code == 202
    token = await client.post("/api/auth/token", json={"email": email, "password": PASSWORD})
    assert token.status_code == 201, token.text
    client.headers["Authorization"] = f"Bearer {token.json()['token']}"
    team = (await client.post("/api/teams", json={"name": "Bench"})).json()["id"]
    case = (await client.post(f"/api/teams/{team}/cases", json={"title": "Bench"})).json()["id"]
    digest = hashlib.sha256(slide.read_bytes()).hexdigest()
    made = await client.post(
        f"/api/cases/{case}/materials",
        json={"name": slide.name, "size": slide.stat().st_size, "sha256": digest},
    )
    answer = made.json()
    proof = answer_from_file(msgspec.convert(answer["challenge"], Challenge), slide)
    material = answer["material"]["id"]
    done = await client.post(
        f"/api/materials/{material}/complete", json={"blob_id": blob, "proof": proof}
    )
    assert done.status_code == 200, done.text
    return client, material


async def post_task(client: httpx.AsyncClient, material: str) -> str:
    answer = await client.post("/api/tasks", json={"material_id": material, "model": "tissue"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["items"][0]["id"])


async def until_done(client: httpx.AsyncClient, task: str, every: float = 0.02) -> dict[str, Any]:
    while True:
        body: dict[str, Any] = (await client.get(f"/api/tasks/{task}")).json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body
        await asyncio.sleep(every)


async def latencies(client: httpx.AsyncClient, tasks: list[str], count: int) -> list[float]:
    took = []
    for _ in range(count):
        started = time.perf_counter()
        answer = await client.get(f"/api/tasks/{random.choice(tasks)}")
        took.append(time.perf_counter() - started)
        assert answer.status_code == 200
        await asyncio.sleep(0.01)
    return took


async def bench(url: str, root: Path, slide: Path, blob: str) -> None:
    client, material = await seed(url, slide, blob)
    print("1. POST tissue -> succeeded, through the API", flush=True)
    single = []
    for _ in range(5):
        started = time.perf_counter()
        task = await post_task(client, material)
        body = await until_done(client, task)
        single.append(time.perf_counter() - started)
        assert body["status"] == "succeeded", body
    print(
        f"  POST -> succeeded: median {statistics.median(single):.2f} s "
        f"(runs: {', '.join(f'{s:.2f}' for s in single)}; first includes warm-up) goal < 3 s",
        flush=True,
    )
    idle = await latencies(client, [task], 200)
    print(f"2. {BURST} tasks queued at once", flush=True)
    started = time.perf_counter()
    burst = await asyncio.gather(*(post_task(client, material) for _ in range(BURST)))
    posted = time.perf_counter() - started
    busy: list[float] = []
    finished = False

    async def probe() -> None:
        while not finished:
            busy.extend(await latencies(client, burst, 20))

    prober = asyncio.create_task(probe())
    bodies = [await until_done(client, t, every=0.2) for t in burst]
    finished = True
    await prober
    wall = time.perf_counter() - started
    statuses = {s: sum(b["status"] == s for b in bodies) for s in {b["status"] for b in bodies}}
    with sqlite3.connect(root / "portal.sqlite3") as db:
        marks = ",".join("?" * len(burst))
        attempts = db.execute(
            f"SELECT max(attempts), sum(attempts) FROM analysis_task WHERE id IN ({marks})",
            [t.replace("-", "") for t in burst],
        ).fetchone()
        results = db.execute(
            "SELECT count(*), count(DISTINCT task_id) FROM analysis_result"
        ).fetchone()
    print(
        f"  statuses: {statuses}; POSTs took {posted:.2f} s; all done after {wall:.1f} s "
        f"({BURST / wall:.1f} tasks/s)"
    )
    print(
        f"  attempts: max {attempts[0]}, sum {attempts[1]} (none twice: {attempts[0] == 1}); "
        f"result rows {results[0]} for {results[1]} tasks"
    )
    print(
        f"  GET /api/tasks/{{id}} idle: p50 {percentile(idle, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(idle, 0.99) * 1000:.1f} ms ({len(idle)} requests)"
    )
    print(
        f"  GET /api/tasks/{{id}} during the burst: p50 {percentile(busy, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(busy, 0.99) * 1000:.1f} ms ({len(busy)} requests)",
        flush=True,
    )
    await client.aclose()


def baseline(cluster_url: str, secret: str, blob: str) -> None:
    from distributed import Client, LocalCluster

    from slidestore import analysis

    token = tokens.mint(secret, ops={Operation.READ}, blob=blob, ttl=600)
    with (
        LocalCluster(
            n_workers=os.cpu_count() or 1, threads_per_worker=1, dashboard_address=None
        ) as local,
        Client(local) as dask,
        slidestore.connect(cluster_url, token) as sdk,
    ):
        slide = sdk.open(blob)
        took = []
        for _ in range(5):
            started = time.perf_counter()
            analysis.run("tissue", slide, client=dask, progress=False)
            took.append(time.perf_counter() - started)
    print(
        f"  baseline, analysis.run('tissue', remote slide) in-process: median "
        f"{statistics.median(took):.2f} s (runs: {', '.join(f'{s:.2f}' for s in took)})",
        flush=True,
    )


def main() -> None:
    slide = _shared_file(SAMPLE_SLIDE_NAME)
    secret = tokens.new_secret()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="tasks-bench-") as tmp:
        root = Path(tmp)
        with CoordinatorProcess(
            root / "coordinator", settings={"secret": secret, "replicas": 1}
        ) as coordinator:
            node_settings = {
                "secret": secret,
                "coordinator_url": coordinator.url,
                "heartbeat_interval": 0.5,
                "reserve_bytes": 0,
            }
            with NodeProcess(root / "node", settings=node_settings):
                writer = tokens.mint(secret, ops={Operation.WRITE, Operation.READ}, ttl=600)
                with slidestore.connect(coordinator.url, writer) as sdk:
                    blob = sdk.upload(slide, progress=False, wait="all")
                baseline(coordinator.url, secret, blob)
                portal, url = start_portal(root, coordinator.url, secret)
                try:
                    asyncio.run(bench(url, root, slide, blob))
                finally:
                    portal.terminate()
                    portal.wait(60)
    print(f"load average at end: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()

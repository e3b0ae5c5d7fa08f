"""The whole system on one machine: ``python -m labportal.demo [--data-dir D] [--port P] [--check]``.

Starts a slidestore coordinator (SQLite), three storage nodes in three zones and the portal
(``labportal serve --migrate``, SQLite), every one a subprocess in its own process group with
its data and log under the data directory. Then, through the portal's JSON API like any
client, it seeds a demo account, a team "Demo lab" and a case "Demo case" holding the sample
slide (uploaded over tus to the node the coordinator picked), waits until the slide has its
three replicas, runs the ``tissue`` model on it through the task API (the portal's own
runner, on its embedded Dask cluster) so a new user sees a result at once, and prints the
portal URL, the login, the case, the viewer and the task.

Re-running on the same data directory reuses everything (the cluster secret and the demo
password are generated once and kept in ``demo.json``): nothing is created twice.

``--check`` does all of that, then verifies over HTTP that the login works, the material is
ready with three replicas, every replica serves a DeepZoom tile with the viewer's token and
the tissue task's result has features;
it stops everything and exits 0 (1 with a message on any failure).

The slidestore servers run as ``python -m slidestore_server.cli`` in this interpreter,
started by slidestore-server's launcher (the one ``dev-cluster`` and the test kits use), so
``slidestore-server`` must be installed beside the portal (it is in the workspace); the
portal itself never imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec

from labportal.domain.materials.possession import Challenge, answer_from_file
from slidestore.client import MintedTokens, aconnect
from slidestore.client.hashing import sha256_file
from slidestore.client.tus import TusUpload
from slidestore.demo_slide import choose_demo_slide
from slidestore.errors import SlidestoreError
from slidestore.tokens import Operation

try:
    from slidestore_server.launcher import Process, free_port, tail
except ModuleNotFoundError as missing:  # the servers it starts are slidestore-server's
    raise SystemExit("the demo needs slidestore-server installed beside the portal") from missing

EMAIL = "demo@example.org"
DISPLAY_NAME = "Demo User"
TEAM = "Demo lab"
CASE = "Demo case"
NODES = 3


class DemoFailed(Exception):
    """Something the demo needs did not happen; the message says what."""


class Service(Process):
    """One server of the demo: the launcher's process, with where it answers."""

    def __init__(
        self, name: str, command: list[str], env: dict[str, str], log: Path, url: str, health: str
    ) -> None:
        super().__init__(command, env, log)
        self.name, self.url, self.health = name, url, health

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_running()
            try:
                if httpx.get(self.url + self.health, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise DemoFailed(
            f"{self.name} did not answer {self.health} within {timeout:.0f}s; {tail(self.log)}"
        )

    def check_running(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise DemoFailed(f"{self.name} exited with {self.proc.returncode}; {tail(self.log)}")


@dataclass
class System:
    root: Path
    port: int
    secret: str
    services: list[Service] = field(default_factory=list)

    @property
    def portal_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self, **settings: str | int) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("SLIDESTORE_", "LABPORTAL_"))
        }
        env.update({k: str(v) for k, v in settings.items()})
        return env

    def _server(self, command: str, name: str, data: Path, **settings: str | int) -> Service:
        port = free_port()
        env = self._env(
            SLIDESTORE_DATA_DIR=str(data),
            SLIDESTORE_HOST="127.0.0.1",
            SLIDESTORE_PORT=port,
            SLIDESTORE_SECRET=self.secret,
            **{f"SLIDESTORE_{k.upper()}": v for k, v in settings.items()},
        )
        data.mkdir(parents=True, exist_ok=True)
        return Service(
            name,
            [sys.executable, "-m", "slidestore_server.cli", command],
            env,
            self.root / "logs" / f"{name}.log",
            f"http://127.0.0.1:{port}",
            "/healthz",
        )

    def start(self) -> None:
        coordinator = self._server("coordinator", "coordinator", self.root / "coordinator")
        self.services.append(coordinator)
        coordinator.start()
        coordinator.wait_healthy(60)
        nodes = [
            self._server(
                "node",
                f"node{i}",
                self.root / f"node{i}",
                coordinator_url=coordinator.url,
                zone=f"zone{i}",
                reserve_bytes=0,
            )
            for i in range(NODES)
        ]
        portal = Service(
            "portal",
            [sys.executable, "-m", "labportal.cli", "serve", "--migrate", "--port", str(self.port)],
            self._env(
                LABPORTAL_DATABASE_URL=f"sqlite:///{self.root / 'portal.sqlite3'}",
                LABPORTAL_CLUSTER_URL=coordinator.url,
                LABPORTAL_COORDINATOR_URL=coordinator.url,
                LABPORTAL_CLUSTER_SECRET=self.secret,
                LABPORTAL_HOST="127.0.0.1",
                # Tasks run in the portal on an embedded Dask cluster of one worker.
                LABPORTAL_DASK_WORKERS=1,
                LABPORTAL_MODELS_DIR=str(self.root / "models"),
            ),
            self.root / "logs" / "portal.log",
            self.portal_url,
            "/healthz",
        )
        # Start the nodes and the portal together: they boot in parallel.
        for service in [*nodes, portal]:
            self.services.append(service)
            service.start()
        for node in nodes:
            node.wait_healthy(60)
        self.wait_nodes_alive(coordinator.url, 60)
        portal.wait_healthy(90)
        ready = portal.url + "/readyz"
        portal.health = "/readyz"
        try:
            portal.wait_healthy(30)
        except DemoFailed as exc:
            raise DemoFailed(f"{ready} never answered 200: {exc}") from None

    def wait_nodes_alive(self, coordinator: str, timeout: float) -> None:
        """Through the SDK, with an ``admin`` token minted per call (the node list)."""
        mint = MintedTokens(self.secret, "demo", {Operation.ADMIN}, ttl=300)
        alive = 0

        async def poll() -> None:
            nonlocal alive
            deadline = time.monotonic() + timeout
            async with aconnect(coordinator, mint, timeout=5, retries=0) as cluster:
                while time.monotonic() < deadline:
                    self.check_running()
                    with contextlib.suppress(SlidestoreError):
                        nodes = await cluster.nodes()
                        alive = sum(n.state == "alive" for n in nodes)
                        if alive >= NODES:
                            return
                    await asyncio.sleep(0.2)
            raise DemoFailed(
                f"only {alive} of {NODES} nodes registered alive within {timeout:.0f}s"
            )

        asyncio.run(poll())

    def check_running(self) -> None:
        for service in self.services:
            service.check_running()

    def stop(self) -> None:
        for service in reversed(self.services):
            service.signal(signal.SIGTERM)
        for service in reversed(self.services):
            if not service.wait(15):
                service.signal(signal.SIGKILL)
                service.wait(15)
        self.services.clear()

    def url_of(self, name: str) -> str:
        return next(s.url for s in self.services if s.name == name)


# -- the data directory ----------------------------------------------------------------------


def load_state(root: Path) -> dict[str, str]:
    """The cluster secret and the demo password: generated once per data directory."""
    path = root / "demo.json"
    if path.exists():
        state: dict[str, str] = json.loads(path.read_text())
        if state.get("secret") and state.get("password"):
            return state
    state = {"secret": secrets.token_hex(32), "password": secrets.token_urlsafe(12)}
    root.mkdir(mode=0o700, parents=True, exist_ok=True)  # the database and logs live here
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(state, out)
    return state


# -- seeding through the portal's API --------------------------------------------------------


@dataclass
class Seeded:
    case_id: str
    material_id: str
    blob_id: str
    created: list[str]
    """What this run created (empty on a re-run)."""
    task_id: str = ""
    """The demo material's finished ``tissue`` task."""


def _ok(response: httpx.Response, *expected: int) -> Any:
    if response.status_code not in (expected or (200,)):
        raise DemoFailed(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {response.text[:500]}"
        )
    if response.headers.get("content-type", "").startswith("text/html"):
        return response.text
    return response.json() if response.content else None


async def login(client: httpx.AsyncClient, password: str, *, register: bool) -> None:
    """Log in (registering the demo account the first time); sets the CSRF header."""
    credentials = {"email": EMAIL, "password": password}
    response = await client.post("/api/auth/login", json=credentials)
    if response.status_code != 200 and register:
        # Registration never logs in (nor says whether the account existed): log in after.
        _ok(
            await client.post(
                "/api/auth/register", json={**credentials, "display_name": DISPLAY_NAME}
            ),
            202,
        )
        response = await client.post("/api/auth/login", json=credentials)
    body = _ok(response, 200)
    client.headers["X-CSRF-Token"] = body["csrf_token"]


async def seed(base: str, password: str, slide: Path, timeout: float) -> Seeded:
    created: list[str] = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        before = await client.post("/api/auth/login", json={"email": EMAIL, "password": password})
        if before.status_code != 200:
            created.append("account")
        await login(client, password, register=True)

        teams = _ok(await client.get("/api/teams"))
        team = next((t for t in teams if t["name"] == TEAM), None)
        if team is None:
            team = _ok(await client.post("/api/teams", json={"name": TEAM}), 201)
            created.append("team")

        page = _ok(await client.get(f"/api/teams/{team['id']}/cases", params={"q": CASE}))
        case = next((c for c in page["items"] if c["title"] == CASE), None)
        if case is None:
            description = "The sample slide, stored on three nodes in three zones."
            case = _ok(
                await client.post(
                    f"/api/teams/{team['id']}/cases",
                    json={"title": CASE, "description": description, "tags": ["demo"]},
                ),
                201,
            )
            created.append("case")

        materials = _ok(await client.get(f"/api/cases/{case['id']}/materials"))
        material = None
        for row in materials:
            if row["name"] != slide.name:
                continue
            if row["blob_id"] is None:  # an upload an earlier run did not finish
                _ok(await client.delete(f"/api/materials/{row['id']}"), 204)
            elif material is None:
                material = row
        if material is None:
            material = await upload(client, case["id"], slide)
            created.append("material")
        material = await wait_ready(client, material["id"], timeout)
        task = await tissue_task(client, material["id"], created, timeout)
        return Seeded(case["id"], material["id"], material["blob_id"], created, task)


async def tissue_task(
    client: httpx.AsyncClient, material_id: str, created: list[str], timeout: float
) -> str:
    """The material's succeeded ``tissue`` task: an earlier run's, else a new one."""
    page = _ok(
        await client.get(
            "/api/tasks",
            params={"material_id": material_id, "model": "tissue", "status": "succeeded"},
        )
    )
    if page["items"]:
        return str(page["items"][0]["id"])
    answer = _ok(
        await client.post("/api/tasks", json={"material_id": material_id, "model": "tissue"}),
        201,
    )
    task_id = str(answer["items"][0]["id"])
    created.append("tissue task")
    deadline = time.monotonic() + timeout
    task: dict[str, Any] = {}
    while time.monotonic() < deadline:
        task = _ok(await client.get(f"/api/tasks/{task_id}"))
        if task["status"] == "succeeded":
            return task_id
        if task["status"] in ("failed", "cancelled"):
            raise DemoFailed(f"the tissue task {task['status']}: {task['error']}")
        await asyncio.sleep(0.3)
    raise DemoFailed(f"the tissue task was still {task.get('status')} after {timeout:.0f}s")


async def upload(client: httpx.AsyncClient, case_id: str, slide: Path) -> dict[str, Any]:
    """Create the material, tus the file to the node the portal names, complete it."""
    size = slide.stat().st_size
    digest = await asyncio.to_thread(sha256_file, slide)
    answer = _ok(
        await client.post(
            f"/api/cases/{case_id}/materials",
            json={"name": slide.name, "size": size, "sha256": digest},
        ),
        201,
    )
    material: dict[str, Any] = answer["material"]
    blob_id = digest
    if not answer["exists"]:
        async with httpx.AsyncClient() as tus:
            blob_id = await TusUpload(
                tus, answer["upload_url"], answer["token"], slide, size=size, sha256=digest
            ).run()
    # Linked only with the proof that this client holds the file.
    proof = answer_from_file(msgspec.convert(answer["challenge"], Challenge), slide)
    completed: dict[str, Any] = _ok(
        await client.post(
            f"/api/materials/{material['id']}/complete", json={"blob_id": blob_id, "proof": proof}
        )
    )
    return completed


async def wait_ready(client: httpx.AsyncClient, material_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    material: dict[str, Any] = {}
    while time.monotonic() < deadline:
        material = _ok(await client.get(f"/api/materials/{material_id}"))
        if material["status"] == "ready" and material["replicas"] >= NODES:
            return material
        await asyncio.sleep(0.3)
    raise DemoFailed(
        f"the sample slide did not reach {NODES} replicas within {timeout:.0f}s: "
        f"status {material.get('status')}, {material.get('replicas')} replicas"
    )


# -- --check ---------------------------------------------------------------------------------


async def check(base: str, password: str, seeded: Seeded) -> list[str]:
    """Everything a visitor would do, over HTTP; returns what was verified."""
    done: list[str] = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        await login(client, password, register=False)
        done.append(f"login as {EMAIL}: ok")
        _ok(await client.get(f"/cases/{seeded.case_id}"))
        material = _ok(await client.get(f"/api/materials/{seeded.material_id}"))
        if material["status"] != "ready" or material["replicas"] < NODES:
            raise DemoFailed(f"the material is not ready on {NODES} replicas: {material}")
        holders = {r["url"] for r in material["replica_nodes"]}
        done.append(f"material ready with {material['replicas']} replicas on {len(holders)} nodes")
        view = _ok(await client.post(f"/api/materials/{seeded.material_id}/view"))
        result = _ok(await client.get(f"/api/tasks/{seeded.task_id}/result"))
        if result["feature_count"] < 1:
            raise DemoFailed(f"the tissue task found no tissue: {result['summary']}")
        fraction = result["summary"].get("tissue_fraction")
        done.append(
            f"tissue task {seeded.task_id}: {result['feature_count']} polygons, "
            f"tissue fraction {fraction}"
        )
        _ok(await client.get(f"/materials/{seeded.material_id}/view"))
    async with httpx.AsyncClient(timeout=30) as nodes:
        for dzi in view["dzi_urls"]:
            response = await nodes.get(dzi, params={"token": view["token"]})
            sides = [int(n) for n in re.findall(r'(?:Width|Height)="(\d+)"', response.text)]
            if response.status_code != 200 or len(sides) != 2:
                raise DemoFailed(f"{dzi} answered {response.status_code}: {response.text[:300]}")
            level = (max(sides) - 1).bit_length()  # the full-resolution level
            tile = dzi.removesuffix(".dzi") + f"_files/{level}/0_0.jpeg"
            response = await nodes.get(tile, params={"token": view["token"]})
            kind = response.headers.get("content-type", "")
            if response.status_code != 200 or kind != "image/jpeg" or not response.content:
                raise DemoFailed(f"{tile} answered {response.status_code} {kind!r}")
            done.append(f"DeepZoom tile {tile}: 200 image/jpeg, {len(response.content)} bytes")
        if len(view["dzi_urls"]) < NODES:
            raise DemoFailed(f"the viewer got {len(view['dzi_urls'])} replicas, not {NODES}")
    return done


# -- main ------------------------------------------------------------------------------------


class _Stop(Exception):
    pass


@contextlib.contextmanager
def _signals() -> Iterator[None]:
    def stop(*_: object) -> None:
        raise _Stop

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labportal.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".cache/labportal-demo"),
        help="state and logs (default: .cache/labportal-demo)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("LABPORTAL_DEMO_PORT", 8000)),
        help="the portal's port (default 8000)",
    )
    parser.add_argument(
        "--slide", type=Path, default=None, help="default: the sample slide, else a generated one"
    )
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for 3 replicas")
    parser.add_argument("--check", action="store_true", help="verify over HTTP, then stop")
    args = parser.parse_args(argv)

    root = args.data_dir.resolve()
    try:
        chosen = choose_demo_slide(args.slide, root / "slides")
    except FileNotFoundError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    print(f"slide: {chosen.describe()}", flush=True)
    slide = chosen.path
    state = load_state(root)
    system = System(root, args.port, state["secret"])
    with _signals():
        try:
            started = time.monotonic()
            print(f"starting a coordinator, {NODES} nodes and the portal (logs: {root / 'logs'})")
            system.start()
            seeded = asyncio.run(seed(system.portal_url, state["password"], slide, args.timeout))
            base = system.portal_url
            print(f"slidestore demo ready in {time.monotonic() - started:.1f}s")
            print(f"  portal       {base}")
            print(f"  login        {EMAIL} / {state['password']}")
            print(f"  case         {base}/cases/{seeded.case_id}")
            print(f"  viewer       {base}/materials/{seeded.material_id}/view")
            print(f"  slide        {slide.name} = blob {seeded.blob_id} on {NODES} nodes")
            print(f"  tissue task  {base}/api/tasks/{seeded.task_id}/result")
            print(f"  coordinator  {system.url_of('coordinator')}")
            for i in range(NODES):
                print(f"  node{i}        {system.url_of(f'node{i}')}  (zone{i})")
            created = ", ".join(seeded.created) or "nothing (all there from an earlier run)"
            print(f"  seeded       {created}")
            print(f"  data         {root}")
            sys.stdout.flush()
            if args.check:
                for line in asyncio.run(check(base, state["password"], seeded)):
                    print(f"  checked      {line}")
                print("demo check passed")
                return 0
            print("Ctrl-C stops everything.", flush=True)
            while True:
                system.check_running()
                time.sleep(0.5)
        except _Stop:
            print("stopping", flush=True)
            return 0
        except DemoFailed as exc:
            print(f"demo failed: {exc}", file=sys.stderr)
            return 1
        except Exception as exc:
            print(f"demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        finally:
            # A second Ctrl-C must not interrupt the shutdown and leave orphans.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            system.stop()


if __name__ == "__main__":
    sys.exit(main())

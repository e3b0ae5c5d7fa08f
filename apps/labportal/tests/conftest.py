"""Portal fixtures: every test runs against SQLite (a file) and PostgreSQL (a database made
for this session on 127.0.0.1:5432 and dropped at the end), both migrated by alembic."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from labportal.cluster import Cluster
from labportal.db import migrate
from labportal.settings import Settings
from slidestore import tokens
from slidestore_server.testing import CoordinatorProcess, NodeProcess

from .fakecluster import COORDINATOR, SECRET, FakeCluster
from .helpers import Portal
from .server import ServerProcess

REAL_CLUSTER_SECRET = tokens.new_secret()
METRICS_TOKEN = "portal-test-metrics-token"

HERE = Path(__file__).parent
PG_SERVER = os.environ.get("LABPORTAL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_SERVER + "/test")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_pg_database() -> str:
    name = f"labportal_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    return name


def drop_pg_database(name: str) -> None:
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def pg_url(name: str) -> str:
    return PG_SERVER.replace("postgresql://", "postgresql+asyncpg://") + "/" + name


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated, shared database per backend (tests make their own users and teams)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'portal.sqlite3'}"
        migrate.upgrade(url)
        yield url
        return
    name = create_pg_database()
    try:
        migrate.upgrade(pg_url(name))
        yield pg_url(name)
    finally:
        drop_pg_database(name)


def portal_settings(database_url: str, **overrides: object) -> Settings:
    """Cheap argon2 parameters: the tests hash many passwords on shared CPUs (and register
    many users from one address)."""
    base = {
        "register_max_per_address": 100_000,
        "database_url": database_url,
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "argon2_parallelism": 1,
        "log_level": "WARNING",
        "task_runner": False,  # the task tests turn it on, with their own Dask scheduler
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real coordinator with one storage node (processes on loopback); its URL."""
    tmp = tmp_path_factory.mktemp("portal-cluster")
    settings = {"secret": REAL_CLUSTER_SECRET, "replicas": 1}
    with CoordinatorProcess(tmp / "coordinator", settings=settings) as coordinator:
        node_settings = {
            "secret": REAL_CLUSTER_SECRET,
            "coordinator_url": coordinator.url,
            "heartbeat_interval": 0.5,
            "reserve_bytes": 0,
        }
        with NodeProcess(tmp / "node", settings=node_settings):
            yield coordinator.url


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, real_cluster: str
) -> Iterator[ServerProcess]:
    """``labportal serve --migrate`` on an empty database of each backend, with a real
    coordinator and node behind it."""
    tmp = tmp_path_factory.mktemp("server")
    name = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'served.sqlite3'}"
    else:
        name = create_pg_database()
        url = pg_url(name).replace("+asyncpg", "")
    try:
        process = ServerProcess.start(
            url,
            tmp / "server.log",
            LABPORTAL_CLUSTER_URL=real_cluster,
            LABPORTAL_CLUSTER_SECRET=REAL_CLUSTER_SECRET,
            LABPORTAL_METRICS_TOKEN=METRICS_TOKEN,
            LABPORTAL_MODELS_DIR=str(tmp / "models"),
            LABPORTAL_DASK_WORKERS="1",
        )
        try:
            yield process
        finally:
            process.stop()
    finally:
        if name:
            drop_pg_database(name)


@pytest_asyncio.fixture
async def portal(database_url: str) -> AsyncIterator[Portal]:
    async with Portal.running(portal_settings(database_url)) as running:
        yield running


@pytest.fixture
def fake() -> FakeCluster:
    return FakeCluster()


@pytest_asyncio.fixture
async def cportal(database_url: str, fake: FakeCluster) -> AsyncIterator[Portal]:
    settings = portal_settings(database_url, cluster_url=COORDINATOR, cluster_secret=SECRET)
    async with Portal.running(settings) as running:
        await running.app.state.cluster.aclose()
        running.app.state.cluster = Cluster(settings, transport=fake.transport())
        yield running


# The task tests' fixtures (a Dask scheduler, the sample slide in the real cluster, a
# portal that runs tasks); imported last: tasks_kit uses the definitions above.
from .tasks_kit import dask_scheduler, sample_blob, tportal  # noqa: E402

__all__ = ["dask_scheduler", "sample_blob", "tportal"]

"""``labportal worker``: a runner outside the portal process, for scale (as many as the
database and the Dask scheduler bear; each task is claimed by exactly one)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from sqlalchemy.ext.asyncio import async_sessionmaker

from labportal.db.engine import create_engine
from labportal.domain.tasks.dask_engine import DaskEngine
from labportal.domain.tasks.runner import TaskRunner
from labportal.settings import Settings
from labportal.system import logs

log = logging.getLogger("labportal.tasks")


async def run_worker(settings: Settings) -> None:
    logs.configure(settings.log_level)
    database = create_engine(settings.database_url)
    engine = DaskEngine(settings)
    runner = TaskRunner(settings, async_sessionmaker(database, expire_on_commit=False), engine)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stopping.set)
    await asyncio.to_thread(engine.client)  # fail early when the scheduler is unreachable
    log.info("worker started", extra={"fields": {"runner": runner.name}})
    serving = asyncio.create_task(runner.serve())
    await stopping.wait()
    await runner.stop()
    await serving
    await asyncio.to_thread(engine.close)
    await database.dispose()

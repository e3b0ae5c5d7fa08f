"""The async engine and advanced-alchemy's Litestar config built from settings."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

from advanced_alchemy.extensions.litestar import AsyncSessionConfig, SQLAlchemyAsyncConfig
from sqlalchemy import event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from labportal.db.base import Base
from labportal.settings import Settings

log = logging.getLogger("labportal.db")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _private_dirs(directory: Path) -> None:
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)


def private_sqlite_file(url: str) -> None:
    """The database holds password hashes and session digests: the file is created 0600
    (SQLite gives its -wal and -shm files the same mode), directories the portal creates
    0700, and an existing file others could read is narrowed to its owner."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    _private_dirs(path.parent)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        mode = path.stat().st_mode
        if mode & 0o077 and path.stat().st_uid == os.getuid():
            log.warning("database file %s was readable by others: now 0600", path)
            path.chmod(stat.S_IMODE(mode) & 0o700)


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; on SQLite with foreign keys enforced, WAL and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        def before_connect(*_: Any) -> None:  # SQLite would create the file with the umask
            private_sqlite_file(url)

        event.listen(engine.sync_engine, "do_connect", before_connect)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True, **kwargs)


def alchemy_config(settings: Settings) -> SQLAlchemyAsyncConfig:
    """Request-scoped sessions that commit on 2xx and roll back otherwise."""
    return SQLAlchemyAsyncConfig(
        engine_instance=create_engine(settings.database_url),
        metadata=Base.metadata,
        before_send_handler="autocommit",
        session_config=AsyncSessionConfig(expire_on_commit=False),
        set_default_exception_handler=False,
        create_all=False,
    )

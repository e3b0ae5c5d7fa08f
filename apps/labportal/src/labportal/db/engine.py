"""The async engine and advanced-alchemy's Litestar config built from settings."""

from __future__ import annotations

from typing import Any

from advanced_alchemy.extensions.litestar import AsyncSessionConfig, SQLAlchemyAsyncConfig
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from labportal.db.base import Base
from labportal.settings import Settings


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; on SQLite with foreign keys enforced, WAL and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)
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

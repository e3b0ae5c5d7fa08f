"""Engines for SQLite (WAL) and PostgreSQL (asyncpg), and idempotent schema creation."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from slidestore_server.coordinator import schema

#: Advisory lock key serialising schema creation among coordinators starting together.
SCHEMA_LOCK = 0x51DE5C0A


def async_url(url: str) -> str:
    """The driver-qualified URL: ``postgresql://`` → asyncpg, ``sqlite://`` → aiosqlite."""
    parsed = make_url(url)
    driver = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}.get(
        parsed.drivername, parsed.drivername
    )
    if driver == "sqlite":
        driver = "sqlite+aiosqlite"
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def create_engine(url: str) -> AsyncEngine:
    # No pool_pre_ping: asyncpg's ping is three round trips (BEGIN, ";", ROLLBACK) and
    # SQLite's a thread hop, per checkout - a third of a placement decision. When
    # PostgreSQL restarts, the first statement on a dead connection fails instead; the
    # engine then discards every pooled connection and that request answers 503
    # (database_unavailable), which clients retry.
    engine = create_async_engine(async_url(url))
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets API readers run while the leader writes; NORMAL is durable across process
    # crashes in WAL mode (only an OS crash may lose the last commits, which nodes resend
    # with their next registration). busy_timeout makes concurrent writers wait, not fail.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def upsert(conn: AsyncConnection, table: Any) -> Any:
    """``INSERT … ON CONFLICT`` for the connection's dialect (both speak the same clause)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


async def create_schema(engine: AsyncEngine) -> None:
    """Create missing tables; safe when several coordinators start at once."""
    for attempt in range(5):
        try:
            async with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    await conn.execute(text(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})"))
                await conn.run_sync(schema.metadata.create_all, checkfirst=True)
                await conn.run_sync(_add_missing_columns)
                stmt = upsert(conn, schema.leader).values(name="leader", holder="", expires_at=0.0)
                await conn.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))
                stmt = upsert(conn, schema.changes).values(id=1, serial=0)
                await conn.execute(stmt.on_conflict_do_nothing(index_elements=["id"]))
                stmt = upsert(conn, schema.identity).values(name="database", value=uuid.uuid4().hex)
                await conn.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))
            return
        except DBAPIError:
            # SQLite has no lock to serialise DDL: another coordinator won the race.
            if attempt == 4:
                raise
            await asyncio.sleep(0.2)


def _add_missing_columns(sync_conn: Any) -> None:
    """Columns (all nullable) and indexes added to an existing table since a database was
    made: ``create_all`` makes missing tables only."""
    found = inspect(sync_conn)
    for table in schema.metadata.sorted_tables:
        indexes = {index["name"] for index in found.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(sync_conn, checkfirst=True)
        have = {column["name"] for column in found.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have:
                assert column.nullable, f"{table.name}.{column.name} must be nullable to add"
                kind = column.type.compile(dialect=sync_conn.dialect)
                sync_conn.execute(
                    text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')
                )


def database_unavailable(exc: BaseException) -> bool:
    """Whether a database error means "not now" rather than a fault in the request.

    Lost connections (PostgreSQL restarted or unreachable) and SQLite's "database is
    locked" are operational: the caller should retry, and the engine has already thrown
    away the broken connections. Anything else (a constraint, bad SQL) is a bug.
    """
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    )

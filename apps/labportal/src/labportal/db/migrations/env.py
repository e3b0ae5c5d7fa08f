"""Alembic environment: async engines (aiosqlite / asyncpg), the portal's metadata."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection

from labportal.db.engine import create_engine
from labportal.db.models import Base
from labportal.settings import Settings, normalize_database_url

config = context.config
url = normalize_database_url(
    config.attributes.get("url")
    or config.get_main_option("sqlalchemy.url")
    or Settings.from_env().database_url
)


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=Base.metadata,
        render_as_batch=url.startswith("sqlite"),
        compare_type=True,
        **kwargs,  # type: ignore[arg-type]
    )


def _run(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    _configure(url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())

"""Alembic on an empty database of each backend: upgrade matches the models, downgrade undoes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from labportal.cli import main
from labportal.db.engine import create_engine
from labportal.db.models import Base

from .conftest import create_pg_database, drop_pg_database, pg_url


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    name = create_pg_database()
    try:
        yield pg_url(name)
    finally:
        drop_pg_database(name)


def _inspect(url: str) -> tuple[list[str], list[object], str | None]:
    async def run() -> tuple[list[str], list[object], str | None]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:

                def sync(connection):  # type: ignore[no-untyped-def]
                    context = MigrationContext.configure(connection, opts={"compare_type": True})
                    tables = sorted(inspect(connection).get_table_names())
                    return (
                        tables,
                        compare_metadata(context, Base.metadata),
                        context.get_current_revision(),
                    )

                return await conn.run_sync(sync)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_upgrade_matches_models_and_downgrade_empties(empty_database: str) -> None:
    assert main(["--database-url", empty_database, "db", "upgrade"]) == 0
    tables, diff, revision = _inspect(empty_database)
    assert set(Base.metadata.tables) <= set(tables)
    assert diff == [], diff
    assert revision == "0004_tasks"
    assert main(["--database-url", empty_database, "db", "downgrade", "base"]) == 0
    tables, _, revision = _inspect(empty_database)
    assert [t for t in tables if t != "alembic_version"] == [] and revision is None
    assert main(["--database-url", empty_database, "db", "upgrade", "head"]) == 0
    assert _inspect(empty_database)[2] == "0004_tasks"

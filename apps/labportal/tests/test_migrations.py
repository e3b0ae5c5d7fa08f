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

HEAD_REVISION = "0006_lifecycle"
"""The newest migration: every chain of them ends here."""


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
    assert revision == HEAD_REVISION
    assert main(["--database-url", empty_database, "db", "downgrade", "base"]) == 0
    tables, _, revision = _inspect(empty_database)
    assert [t for t in tables if t != "alembic_version"] == [] and revision is None
    assert main(["--database-url", empty_database, "db", "upgrade", "head"]) == 0
    assert _inspect(empty_database)[2] == HEAD_REVISION


def test_0005_fills_the_search_columns_of_slides_read_before(empty_database: str) -> None:
    """A material whose metadata was stored under 0003 is searchable after the upgrade."""
    import datetime
    import uuid

    import sqlalchemy as sa
    from advanced_alchemy.types import DateTimeUTC

    assert main(["--database-url", empty_database, "db", "upgrade", "0003"]) == 0
    now = datetime.datetime.now(datetime.UTC)

    def stamps() -> list[sa.ColumnClause[object]]:
        return [sa.column("created_at", DateTimeUTC()), sa.column("updated_at", DateTimeUTC())]

    team = sa.table(
        "team", sa.column("id", sa.Uuid()), sa.column("name"), sa.column("description"), *stamps()
    )
    case = sa.table(
        "case",
        sa.column("id", sa.Uuid()),
        sa.column("team_id", sa.Uuid()),
        sa.column("title"),
        sa.column("description"),
        sa.column("status"),
        *stamps(),
    )
    material = sa.table(
        "case_material",
        sa.column("id", sa.Uuid()),
        sa.column("case_id", sa.Uuid()),
        sa.column("name"),
        sa.column("size"),
        sa.column("error"),
        sa.column("slide", sa.JSON()),
        *stamps(),
    )
    ids = [uuid.uuid4() for _ in range(4)]
    slide = {
        "metadata": {
            "scanner_model": "ScanScope",
            "scanner_id": "SS1",
            "mpp_x": 0.499,
            "objective_power": 20.0,
            "acquired_at": "2009-12-29T09:59:15",
        }
    }

    async def seed() -> None:
        engine = create_engine(empty_database)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    team.insert().values(
                        id=ids[0], name="t", description="", created_at=now, updated_at=now
                    )
                )
                await conn.execute(
                    case.insert().values(
                        id=ids[1],
                        team_id=ids[0],
                        title="c",
                        description="",
                        status="open",
                        created_at=now,
                        updated_at=now,
                    )
                )
                for material_id, info in ((ids[2], slide), (ids[3], None)):
                    await conn.execute(
                        material.insert().values(
                            id=material_id,
                            case_id=ids[1],
                            name="m",
                            size=1,
                            error="",
                            slide=info,
                            created_at=now,
                            updated_at=now,
                        )
                    )
        finally:
            await engine.dispose()

    async def facts() -> list[tuple[object, ...]]:
        engine = create_engine(empty_database)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    sa.text(
                        "SELECT scanner, objective_power, mpp, scanned_at FROM case_material "
                        "ORDER BY slide IS NULL"
                    )
                )
                return [tuple(r) for r in rows]
        finally:
            await engine.dispose()

    asyncio.run(seed())
    assert main(["--database-url", empty_database, "db", "upgrade", "head"]) == 0
    assert asyncio.run(facts()) == [
        ("ScanScope SS1", 20.0, 0.499, "2009-12-29T09:59:15"),
        (None, None, None, None),
    ]

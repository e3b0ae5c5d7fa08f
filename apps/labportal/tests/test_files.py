"""What the portal writes to disk is its own: the SQLite database (and its WAL) 0600, the
directories it creates for it 0700."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from labportal.db import migrate

from .conftest import portal_settings
from .helpers import Portal


@pytest.fixture
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)  # what most systems run with: files 0644 unless asked otherwise
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def _write(url: str, name: str, database: Path) -> dict[str, int]:
    """Register a user; the modes of SQLite's side files while the portal has them open."""
    async with Portal.running(portal_settings(url)) as portal:
        await portal.user(name)  # writes through the WAL
        return {
            suffix: _mode(database.with_name(database.name + suffix)) for suffix in ("-wal", "-shm")
        }


@pytest.mark.usefixtures("usual_umask")
def test_sqlite_database_is_private(tmp_path: Path) -> None:
    database = tmp_path / "state" / "portal" / "portal.sqlite3"
    url = f"sqlite+aiosqlite:///{database}"
    migrate.upgrade(url)
    assert _mode(database) == 0o600
    assert _mode(database.parent) == 0o700 and _mode(database.parent.parent) == 0o700
    assert asyncio.run(_write(url, "writer", database)) == {"-wal": 0o600, "-shm": 0o600}
    # A file left readable by an older version is narrowed when the portal opens it.
    database.chmod(0o644)
    asyncio.run(_write(url, "again", database))
    assert _mode(database) == 0o600

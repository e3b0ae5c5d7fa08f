"""Noticing that the database was replaced under a running coordinator.

A coordinator that goes on leading on a database that is no longer the cluster's would
decide from nothing: on an emptied database every blob looks new, so deleted blobs are
adopted again and R and retention fall back to defaults. Two checks, every loop pass:

- the ``identity`` row written when the schema was made must still hold the value this
  process read at start (missing or different: the database was dropped and made again,
  or a new SQLite file appeared where pooled connections no longer look);
- on SQLite, the database path must still be the same file (device and inode): a
  deleted file stays readable through the connections that have it open, so the row
  check alone would go on passing.

Once lost, always lost: the process stops leading and says so (``/readyz``,
``/v1/status``, the log) until it is restarted, which is how a coordinator rebuilds an
empty database on purpose (nodes re-register what they hold and their tombstones).
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from slidestore_server.coordinator.schema import identity


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


class DatabaseIdentity:
    def __init__(self, engine: AsyncEngine, url: str) -> None:
        self.engine = engine
        self.path = sqlite_path(url)
        self.value: str | None = None
        self.file: tuple[int, int] | None = None
        self.lost: str | None = None
        """Why this process no longer trusts its database (None: it does)."""

    async def capture(self) -> None:
        """At start, after the schema exists: remember what this database is."""
        self.value = await self._read()
        if self.path is not None:
            self.file = _file_id(self.path)

    async def check(self) -> str | None:
        """None while the database is the one we started with; else why not (sticky).
        A database that cannot be reached is not "lost": that raises, as before."""
        if self.lost is not None:
            return self.lost
        if self.path is not None:
            now = _file_id(self.path)
            if now != self.file:
                self.lost = (
                    f"database file {self.path} was deleted"
                    if now is None
                    else f"database file {self.path} was replaced"
                )
                return self.lost
        value = await self._read()
        if value != self.value:
            self.lost = "database was replaced (its identity row changed or is missing)"
        return self.lost

    async def _read(self) -> str | None:
        async with self.engine.connect() as conn:
            try:
                row = (
                    await conn.execute(
                        select(identity.c.value).where(identity.c.name == "database")
                    )
                ).first()
            except Exception as exc:
                # No such table: a new, empty database sits where ours was.
                if "no such table" in str(exc) or "does not exist" in str(exc):
                    return None
                raise
        return None if row is None else str(row.value)

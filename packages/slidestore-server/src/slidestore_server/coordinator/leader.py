"""Who runs the loop: one coordinator at a time among those sharing a database.

PostgreSQL: a session advisory lock taken on a connection kept out of the pool for as
long as we lead. The server releases it when that session ends, so a killed or
partitioned leader loses it without any timeout; a failed check on the connection means
we must assume it is gone. SQLite (one machine, no sessions that outlive a crash): a
lease row renewed every pass; another coordinator takes over once it lapses.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from slidestore_server.coordinator.schema import leader

#: The advisory lock key of "the leader" (any constant the coordinators agree on).
LEADER_LOCK = 0x51DE1EAD

log = logging.getLogger("slidestore.coordinator.leader")


class Leadership:
    """``await check()`` every pass: True while this process is the leader."""

    def __init__(self, engine: AsyncEngine, *, lease_seconds: float = 3.0) -> None:
        self.engine = engine
        self.lease_seconds = lease_seconds
        self.holder = uuid.uuid4().hex
        self.leading = False
        self._conn: AsyncConnection | None = None

    async def check(self) -> bool:
        was = self.leading
        try:
            if self.engine.dialect.name == "postgresql":
                self.leading = await self._check_lock()
            else:
                self.leading = await self._renew_lease()
        except Exception:
            log.warning("leadership check failed", exc_info=True)
            await self._drop_connection()
            self.leading = False
        if self.leading != was:
            log.warning("leadership %s", "acquired" if self.leading else "lost")
        return self.leading

    async def _check_lock(self) -> bool:
        if self._conn is not None:
            # Any answer proves the session, and with it the lock, is still ours.
            await self._conn.execute(text("SELECT 1"))
            return True
        conn = await self.engine.connect()
        try:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            got = (
                await conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LEADER_LOCK})
            ).scalar()
        except BaseException:
            await conn.close()
            raise
        if got:
            self._conn = conn
            return True
        await conn.close()
        return False

    async def _renew_lease(self) -> bool:
        now = time.time()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(leader)
                .where(
                    leader.c.name == "leader",
                    (leader.c.holder == self.holder) | (leader.c.expires_at < now),
                )
                .values(holder=self.holder, expires_at=now + self.lease_seconds)
            )
        return result.rowcount == 1

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # Invalidate, never return it to the pool: a pooled session would keep the lock.
            with contextlib.suppress(Exception):
                await conn.invalidate()
            with contextlib.suppress(Exception):
                await conn.close()

    async def release(self) -> None:
        """Step down on shutdown so another coordinator takes over at once."""
        if self.engine.dialect.name == "postgresql":
            await self._drop_connection()
        elif self.leading:
            with contextlib.suppress(Exception):
                async with self.engine.begin() as conn:
                    await conn.execute(
                        update(leader)
                        .where(leader.c.name == "leader", leader.c.holder == self.holder)
                        .values(expires_at=0.0)
                    )
        self.leading = False

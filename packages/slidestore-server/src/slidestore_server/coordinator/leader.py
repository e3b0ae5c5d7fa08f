"""Who runs the loop: one coordinator at a time among those sharing a database.

PostgreSQL: a session advisory lock taken on a connection kept out of the pool for as
long as we lead. The server releases it when that session ends, so a killed or
partitioned leader loses it without any timeout; a failed check on the connection means
we must assume it is gone. SQLite (one machine, no sessions that outlive a crash): a
lease row renewed every pass; another coordinator takes over once it lapses.

**Terms.** Each time a coordinator takes the lead it writes itself into the ``leader``
row, and a new ``term`` id there unless the row already named it (nobody else led since).
The loop holds repair for ``repair_grace`` only when the term is new: a coordinator whose
lock connection was cut (PostgreSQL restarted, a proxy timing out, ``pg_terminate_backend``)
takes the lock again on a fresh connection at once, in the same pass, and goes on with the
same term, so a flapping connection no longer stops replication (issue 19, item 4).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid

from sqlalchemy import case, select, text, update
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
        self.term: str | None = None
        """The term of our latest lead (kept after losing it: taking it back with nobody
        in between continues it)."""
        self.terms = 0
        """How many distinct terms this process started (a reconnect does not count)."""
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
            log.warning(
                "leadership %s", "acquired" if self.leading else "lost", extra={"term": self.term}
            )
        return self.leading

    async def _check_lock(self) -> bool:
        if self._conn is not None:
            try:
                # Any answer proves the session, and with it the lock, is still ours.
                await self._conn.execute(text("SELECT 1"))
                return True
            except Exception as exc:
                # The session is gone, and the lock with it. Take it again on a new
                # connection now: if nobody else took it meanwhile the term goes on.
                log.warning("leader lock connection lost (%s): taking the lock again", exc)
                await self._drop_connection()
        conn = await self.engine.connect()
        try:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            got = (
                await conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LEADER_LOCK})
            ).scalar()
            if got:
                await self._claim(conn, time.time())
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
                .values(expires_at=now + self.lease_seconds)
            )
            if result.rowcount == 1:
                await self._claim(conn, now + self.lease_seconds)
        return result.rowcount == 1

    async def _claim(self, conn: AsyncConnection, expires_at: float) -> None:
        """Write ourselves into the leader row: the term goes on if the row still names
        us (nobody led in between), else a new one starts."""
        fresh = uuid.uuid4().hex
        await conn.execute(
            update(leader)
            .where(leader.c.name == "leader")
            .values(
                holder=self.holder,
                expires_at=expires_at,
                term=case(
                    (
                        (leader.c.holder == self.holder) & leader.c.term.is_not(None),
                        leader.c.term,
                    ),
                    else_=fresh,
                ),
            )
        )
        term = (await conn.execute(select(leader.c.term).where(leader.c.name == "leader"))).scalar()
        if term != self.term:
            self.terms += 1
            log.warning("leader term %s begins", term)
        self.term = term

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

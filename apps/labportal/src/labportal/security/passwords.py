"""argon2id password hashing, run in worker threads so the event loop never blocks on it.

Each computation takes ``argon2_memory_kib`` of memory and a core for a while, and anyone
can ask for one (register, log in): a process-wide semaphore bounds how many run at once,
and a request that cannot get a slot in time is answered 503 instead of queueing forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from litestar.concurrency import sync_to_thread

from labportal.errors import ServiceUnavailable
from labportal.settings import Settings


class Passwords:
    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        # Verifying against this when the account does not exist keeps timing uniform.
        self._dummy = self._hasher.hash("not-a-real-password")
        self._slots = asyncio.Semaphore(max(1, settings.password_hash_concurrency))
        self._wait = settings.password_hash_wait_seconds

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._wait):
                await self._slots.acquire()
        except TimeoutError:
            retry = str(max(1, math.ceil(self._wait)))
            raise ServiceUnavailable(
                "the server is busy checking passwords; try again shortly",
                code="busy",
                headers={"Retry-After": retry},
            ) from None
        try:
            yield
        finally:
            self._slots.release()

    async def hash(self, password: str) -> str:
        async with self._slot():
            return await sync_to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(stored or self._dummy, password) and stored is not None
            except (VerificationError, InvalidHashError):
                return False

        async with self._slot():
            return await sync_to_thread(check)

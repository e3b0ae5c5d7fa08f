"""Retention and deletion: archive expired blobs, then delete copies nobody should keep.

Expired blobs are streamed from a readable copy into ``{archive_url}/{blob_id}`` (fsspec)
and the sha256 checked before the blob is marked archived; without an archive they are
marked deleted. Either way the copies then become "doomed" and :meth:`run_pass` deletes
them on every reachable node, which is also how ``DELETE /v1/blobs/{id}`` finishes on
nodes that were down when it was asked. Repair ignores deleted and archived blobs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from slidestore_server.coordinator import registry, worklist
from slidestore_server.coordinator.nodes import NodeCallFailed
from slidestore_server.coordinator.state import Coordinator

log = logging.getLogger("slidestore.coordinator.retention")


class Retention:
    def __init__(self, coord: Coordinator) -> None:
        self.coord = coord
        self.deleting: set[tuple[str, str]] = set()
        self._doomed_left = True  # the first pass looks
        self._archiver: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def run_pass(self, *, scan: bool = True) -> None:
        """``scan``: look for copies of deleted or archived blobs left on nodes (a join over
        every replica; the loop asks only when something changed, or deletes remain)."""
        coord = self.coord
        now = coord.now()
        async with coord.engine.connect() as conn:
            doomed = (
                await worklist.doomed_copies(conn, now, coord.timeouts)
                if scan or self.deleting or self._doomed_left
                else []
            )
            self._doomed_left = bool(doomed)
            expired = [] if self._busy() else await worklist.expired(conn, now)
        for blob_id, node_id, url in doomed:
            if (blob_id, node_id) not in self.deleting:
                self.deleting.add((blob_id, node_id))
                self._spawn(self._delete(blob_id, node_id, url, "retention"))
        if expired:
            # One archiver at a time: archiving is bulk I/O, not worth racing the repair copies.
            self._archiver = asyncio.ensure_future(self._retire(expired))

    def _busy(self) -> bool:
        return self._archiver is not None and not self._archiver.done()

    async def _retire(self, rows: list) -> None:  # type: ignore[type-arg]
        coord = self.coord
        for row in rows:
            url = row.archive_url  # already archived once (restored, then expired again)
            if url is None and coord.settings.archive_url:
                url = await self._archive(row.blob_id)
                if url is None:
                    continue  # no copy could be archived now: try again next pass
            async with coord.engine.begin() as conn:
                await worklist.retire(conn, row.blob_id, url)
            self._doomed_left = True  # its copies are doomed now: look for them next pass
            if url:
                coord.metrics.archived.inc()
            log.info("retention expired", extra={"blob_id": row.blob_id, "archive_url": url})

    async def _archive(self, blob_id: str) -> str | None:
        coord = self.coord
        assert coord.settings.archive_url
        async with coord.engine.connect() as conn:
            sources = await worklist.readable_holders(conn, blob_id, coord.now(), coord.timeouts)
        for source in sources:
            try:
                return await coord.nodes.archive(source, blob_id, coord.settings.archive_url)
            except (NodeCallFailed, OSError) as exc:
                log.warning("archive failed: %s", exc, extra={"blob_id": blob_id})
        return None

    async def _delete(self, blob_id: str, node_id: str, url: str, reason: str) -> None:
        try:
            await self.coord.nodes.delete(url, blob_id)
            async with self.coord.engine.begin() as conn:
                await registry.drop_replica(conn, blob_id, node_id)
            self.coord.metrics.deletes.labels(reason).inc()
        except Exception as exc:
            log.warning("delete failed: %s", exc, extra={"blob_id": blob_id, "node": node_id})
        finally:
            self.deleting.discard((blob_id, node_id))

    def delete_soon(self, blob_id: str, holders: list[tuple[str, str]]) -> None:
        """``DELETE /v1/blobs/{id}``: the deletion is recorded (the tombstone row); start
        deleting the copies without waiting for them. A holder that is slow or frozen
        finishes when it answers; one that fails is retried by :meth:`run_pass`, and one
        that is down deletes its copy when it returns (it is sent the tombstone)."""
        for node_id, url in holders:
            if (blob_id, node_id) not in self.deleting:
                self.deleting.add((blob_id, node_id))
                self._spawn(self._delete(blob_id, node_id, url, "delete"))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        tasks = [*self._tasks, *([self._archiver] if self._archiver else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

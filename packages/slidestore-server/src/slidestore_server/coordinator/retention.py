"""Retention, lifecycle and deletion: archive expired and idle blobs, then delete copies
nobody should keep.

Expired blobs (past ``expires_at``) and idle ones (nobody read them for their idle period,
``SLIDESTORE_ARCHIVE_IDLE_DAYS`` or the blob's own, or an operator asked) are streamed from
a readable copy into the archive (``coordinator/archive.py``: zstd where it pays, the
sha256 checked, thumbnail and info beside it) before the blob is marked archived; without
an archive expired ones are marked deleted (idle ones stay). Either way the copies then
become "doomed" and :meth:`run_pass` deletes them on every reachable node (with their
prerendered tiles), which is also how ``DELETE /v1/blobs/{id}`` finishes on nodes that
were down when it was asked; a deleted blob's archive is removed too. Repair ignores
deleted and archived blobs, and restores from the archive those an operator restores.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from slidestore_server.coordinator import archive, registry, worklist
from slidestore_server.coordinator.nodes import ArchivedCopy, NodeCallFailed
from slidestore_server.coordinator.state import Coordinator

log = logging.getLogger("slidestore.coordinator.retention")


class Retention:
    def __init__(self, coord: Coordinator) -> None:
        self.coord = coord
        self.deleting: set[tuple[str, str]] = set()
        self._doomed_left = True  # the first pass looks
        self._archiver: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.purging = False
        self._rebuilt_term: str | None = None

    async def run_pass(self, *, scan: bool = True) -> None:
        """``scan``: look for copies of deleted or archived blobs left on nodes (a join over
        every replica; the loop asks only when something changed, or deletes remain)."""
        coord = self.coord
        now = coord.now()
        settings = coord.settings
        async with coord.engine.connect() as conn:
            doomed = (
                await worklist.doomed_copies(conn, now, coord.timeouts)
                if scan or self.deleting or self._doomed_left
                else []
            )
            self._doomed_left = bool(doomed)
            expired = [] if self._busy() else await worklist.expired(conn, now)
            idle = (
                await worklist.idle(conn, coord.lifecycle_now(), settings.archive_idle_days)
                if settings.archive_url and not (expired or self._busy())
                else []
            )
            purge = await worklist.archives_to_purge(conn) if scan and not self.purging else []
        for blob_id, node_id, url in doomed:
            if (blob_id, node_id) not in self.deleting:
                self.deleting.add((blob_id, node_id))
                self._spawn(self._delete(blob_id, node_id, url, "retention"))
        # One archiver at a time: archiving is bulk I/O, not worth racing the repair copies.
        if expired:
            self._archiver = asyncio.ensure_future(self._retire(expired))
        elif idle:
            self._archiver = asyncio.ensure_future(self._shelve(idle))
        if purge:
            self.purging = True
            self._spawn(self._purge(purge))
        if (
            settings.archive_url
            and self._rebuilt_term != coord.leadership.term
            and coord.now() >= coord.repair_held_until  # nodes registered what they know
        ):
            self._rebuilt_term = coord.leadership.term
            self._spawn(self._rebuild(settings.archive_url))

    def _busy(self) -> bool:
        return self._archiver is not None and not self._archiver.done()

    async def _retire(self, rows: list) -> None:  # type: ignore[type-arg]
        coord = self.coord
        for row in rows:
            url = row.archive_url  # already archived once (restored, then expired again)
            stored = None
            if url is None and coord.settings.archive_url:
                stored = await self._archive(row.blob_id)
                if stored is None:
                    continue  # no copy could be archived now: try again next pass
                url = stored.url
            async with coord.engine.begin() as conn:
                await worklist.retire(conn, row.blob_id, url, stored)
            self._doomed_left = True  # its copies are doomed now: look for them next pass
            if url:
                coord.metrics.archived.inc()
            log.info("retention expired", extra={"blob_id": row.blob_id, "archive_url": url})

    async def _shelve(self, rows: list) -> None:  # type: ignore[type-arg]
        """Idle blobs (or asked for): archived, then their copies doomed, if nobody read
        them while the archive was being written."""
        coord = self.coord
        for row in rows:
            if row.archive_url is not None:  # archived before (then restored): still there
                stored = ArchivedCopy(
                    url=row.archive_url,
                    size=row.size,
                    stored_bytes=row.archive_bytes or row.size,
                    encoding=row.archive_encoding or "raw",
                )
            else:
                found = await self._archive(row.blob_id)
                if found is None:
                    continue
                stored = found
            async with coord.engine.begin() as conn:
                done = await worklist.archive_idle(
                    conn,
                    row.blob_id,
                    stored,
                    coord.lifecycle_now(),
                    coord.settings.archive_idle_days,
                )
            if done:
                self._doomed_left = True
                coord.metrics.archived.inc()
                log.info(
                    "archived an idle blob",
                    extra={"blob_id": row.blob_id, "archive_url": stored.url},
                )

    async def _archive(self, blob_id: str) -> ArchivedCopy | None:
        coord = self.coord
        assert coord.settings.archive_url
        async with coord.engine.connect() as conn:
            sources = await worklist.readable_holders(conn, blob_id, coord.now(), coord.timeouts)
            target = await worklist.target_of(conn, blob_id)
        for source in sources:
            try:
                stored = await coord.nodes.archive(
                    source,
                    blob_id,
                    coord.settings.archive_url,
                    coord.settings.copy_bytes_per_second,
                    jpegxl=coord.settings.archive_jpegxl,
                )
                await archive.store_sidecars(coord.nodes, source, stored, blob_id, target)
                return stored
            except (NodeCallFailed, OSError) as exc:
                log.warning("archive failed: %s", exc, extra={"blob_id": blob_id})
        return None

    async def _purge(self, rows: list) -> None:  # type: ignore[type-arg]
        """Deleted blobs' archives (their tombstones keep the rows until this is done)."""
        try:
            for row in rows:
                try:
                    await archive.purge(row.archive_url, row.blob_id)
                except OSError as exc:
                    log.warning("archive purge failed: %s", exc, extra={"blob_id": row.blob_id})
                    continue
                async with self.coord.engine.begin() as conn:
                    await worklist.archive_purged(conn, row.blob_id)
                log.info("archive of a deleted blob removed", extra={"blob_id": row.blob_id})
        finally:
            self.purging = False

    async def _rebuild(self, archive_url: str) -> None:
        """A new leader: archived blobs its database does not know (it was lost, and no
        node remembers them) come back from the archive's manifests."""
        try:
            found = await archive.manifests(archive_url)
            async with self.coord.engine.begin() as conn:
                adopted = await archive.adopt_manifests(conn, found)
        except Exception as exc:
            log.warning("reading the archive's manifests failed: %s", exc)
            self._rebuilt_term = None
            return
        if adopted:
            log.warning("rebuilt archived blobs from the archive", extra={"blobs": adopted})

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

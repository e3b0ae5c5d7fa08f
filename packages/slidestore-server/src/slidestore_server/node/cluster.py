"""The node's background duties, run by exactly one worker process: the cluster agent
(when a coordinator is configured) and the scrubber.

Started and stopped by the app's lifespan. Every worker tries the agent lock
(:mod:`.election`); the one that gets it runs the duties, the others retry now and then
so one of them takes over if the holder dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from slidestore_server.node.agent import ClusterAgent
from slidestore_server.node.election import RETRY_SECONDS, AgentLock
from slidestore_server.node.state import NodeState

log = logging.getLogger("slidestore.node")


class BackgroundDuties:
    def __init__(self, node: NodeState) -> None:
        self.node = node
        self.lock = AgentLock(node.settings.data_dir)
        self._task: asyncio.Task[None] | None = None

    @property
    def wanted(self) -> bool:
        return True  # abandoned uploads expire on every node

    def start(self) -> None:
        if self.wanted:
            self._task = asyncio.create_task(self._run(), name="slidestore-background")

    async def stop(self) -> None:
        self.node.scrubber.stop()
        if not self.lock.held:
            self.node.access.flush()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.lock.release()

    async def _run(self) -> None:
        while not await asyncio.to_thread(self.lock.try_acquire):
            # Not the agent: hand what was read here to the one that is (node/access.py).
            await asyncio.to_thread(self.node.access.flush)
            await asyncio.sleep(RETRY_SECONDS)
        log.info("this worker runs the node's background duties")
        duties: list[Coroutine[Any, Any, None]] = []
        node = self.node
        if node.settings.coordinator_url:
            agent = ClusterAgent(
                settings=node.settings,
                node_id=node.node_id,
                blobs=node.blobs,
                capacity=node.capacity,
                changes=node.changes,
                on_deleted=self._deleted,
                access=node.access,
            )
            duties.append(agent.run())
        if node.scrubber.enabled:
            duties.append(node.scrubber.run())
        duties.append(self._expire_uploads())
        async with asyncio.TaskGroup() as group:
            for duty in duties:
                group.create_task(duty)

    async def _deleted(self, blob_ids: list[str]) -> None:
        """The agent removed copies of deleted blobs: as the node's own DELETE route does."""
        self.node.blobs_gone(blob_ids)
        for blob_id in blob_ids:
            await asyncio.to_thread(self.node.renditions.forget, blob_id)

    async def _expire_uploads(self) -> None:
        """Remove uploads nobody touched for the expiry period, even if no client ever
        comes back (requests only expire the sessions they happen to look at)."""
        settings = self.node.settings
        shortest = min(settings.upload_expiry_seconds, settings.upload_idle_expiry_seconds)
        period = max(0.5, min(60.0, shortest / 2))
        while True:
            try:
                expired = await asyncio.to_thread(self.node.uploads.expire)
            except Exception:  # a bad session must not stop expiry for the others
                log.exception("upload expiry pass failed")
            else:
                if expired:
                    log.info("uploads expired", extra={"uploads": expired})
            await asyncio.sleep(period)

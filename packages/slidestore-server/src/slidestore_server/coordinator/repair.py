"""Carrying out ``slidestore.cluster.plan_repair``: copies, trims, restores from archive.

Copies run as background tasks so a pass never waits for data to move; the tasks in
flight go back into the next plan (``in_flight``), which is how ``max_copies`` holds
across passes. A copy that failed is retried by a later pass, from another readable
source when there is one. Successes are recorded at once, not at the next heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import msgspec

from slidestore.cluster import BlobReplicas, CopyTask, NodeInfo, NodeState, place, plan_repair
from slidestore.cluster.wire import Replicate
from slidestore_server.coordinator import catalog, registry, worklist
from slidestore_server.coordinator.nodes import NodeCallFailed
from slidestore_server.coordinator.state import Coordinator

log = logging.getLogger("slidestore.coordinator.repair")

#: How long a source that failed a copy of a blob is avoided for that blob.
FAILED_SOURCE_SECONDS = 60.0
#: The pseudo-source of a copy pulled from the archive.
ARCHIVE = "archive"


class Repairer:
    def __init__(self, coord: Coordinator, moving: Mapping[str, CopyTask] | None = None) -> None:
        self.coord = coord
        #: Rebalancing moves running (blob -> move): planned as copies in flight, so a
        #: blob being moved is neither trimmed nor copied again meanwhile.
        self.moving: Mapping[str, CopyTask] = moving if moving is not None else {}
        self.in_flight: dict[tuple[str, str], CopyTask] = {}  # (blob, target) -> task
        self.trimming: set[tuple[str, str]] = set()
        self.failed: dict[tuple[str, str], float] = {}  # (blob, source) -> avoid until
        self._tasks: set[asyncio.Task[None]] = set()
        self.dirty = True
        """The last pass left work (or a copy/trim finished since): scan again next pass."""
        self._seen: set[str] | None = None  # node ids of the last pass while held
        self._hold_limit = 0.0

    def hold(self) -> None:
        """Leadership was just acquired: wait for the nodes before copying anything."""
        now = self.coord.now()
        self.coord.repair_held_until = now + self.coord.settings.grace_seconds
        # Nodes back off while the coordinator is down, so after a restart the first of
        # them may register only after the grace: until one has registered, the hold goes
        # on (up to four graces), else the first holder to register would be taken for
        # the only one and its blobs copied before the others arrive.
        self._hold_limit = now + 4 * self.coord.settings.grace_seconds
        self._seen = None
        self.dirty = True

    def held(self, nodes: list[NodeInfo], now: float) -> bool:
        if now >= self.coord.repair_held_until:
            if not nodes and now < self._hold_limit:
                self.coord.repair_held_until = now + self.coord.settings.grace_seconds
                self._seen = None
                return True
            return False
        ids = {node.node_id for node in nodes}
        if self._seen is not None and any(
            node.node_id not in self._seen and node.used_bytes > 0 for node in nodes
        ):
            self.coord.repair_held_until = now + self.coord.settings.grace_seconds
        self._seen = ids
        return True

    @property
    def busy(self) -> bool:
        return self.dirty or bool(self.in_flight) or bool(self.trimming)

    async def run_pass(self, nodes: list[NodeInfo]) -> None:
        coord = self.coord
        now = coord.now()
        self.failed = {key: until for key, until in self.failed.items() if until > now}
        # A target that just answered 507 looks full: the plan picks the next one.
        nodes = coord.refusals.apply(nodes, now)
        held = self.held(nodes, now)
        # Not "rescan while held": with nothing off R that would scan every blob twice a
        # second for nothing. A node registering changes the serial, which brings the next
        # scan anyway.
        self.dirty = False
        async with coord.engine.connect() as conn:
            blobs = await worklist.blobs_to_repair(conn, now, coord.timeouts)
            if not blobs:
                return
            # Blobs off R remain (copies deferred, unplaceable, waiting for a source, or
            # started now): keep scanning every pass until the cluster is whole again.
            self.dirty = True
            plan = plan_repair(
                blobs,
                nodes,
                max_copies=coord.settings.max_copies,
                in_flight=[*self.in_flight.values(), *self.moving.values()],
            )
            if held:
                plan = msgspec.structs.replace(plan, copies=(), unavailable=())
            archived = (
                await catalog.archive_urls(conn, plan.unavailable) if plan.unavailable else {}
            )
        by_id = {node.node_id: node for node in nodes}
        by_blob = {blob.blob_id: blob for blob in blobs}
        for task in plan.copies:
            task = self._avoid_failed(task, by_blob[task.blob_id], by_id)
            order = Replicate(
                blob_id=task.blob_id,
                size=task.size,
                source_url=by_id[task.source].url,
                bytes_per_second=coord.settings.copy_bytes_per_second,
            )
            self._start_copy(task, by_id[task.target], order)
        for trim in plan.trims:
            if (trim.blob_id, trim.node_id) not in self.trimming:
                self.trimming.add((trim.blob_id, trim.node_id))
                self._spawn(self._trim(trim.blob_id, trim.node_id, by_id[trim.node_id].url))
        for blob_id in plan.unavailable:
            if blob_id in archived:
                self._restore(by_blob[blob_id], archived[blob_id], nodes)
        coord.metrics.copies_in_flight.set(len(self.in_flight))

    def _avoid_failed(
        self, task: CopyTask, blob: BlobReplicas, by_id: dict[str, NodeInfo]
    ) -> CopyTask:
        if (task.blob_id, task.source) not in self.failed:
            return task
        others = sorted(
            n
            for n in blob.replicas
            if n in by_id
            and by_id[n].state is NodeState.ALIVE
            and (task.blob_id, n) not in self.failed
        )
        return msgspec.structs.replace(task, source=others[0]) if others else task

    def _restore(self, blob: BlobReplicas, archive_url: str, nodes: list[NodeInfo]) -> None:
        """A blob without a readable copy but with an archived one: pull it back to one node
        (repair adds the others from there). Not while a holder is suspect: it may return."""
        states = {node.node_id: node.state for node in nodes}
        if any(states.get(n) is NodeState.SUSPECT for n in blob.replicas):
            return
        if any(key[0] == blob.blob_id for key in self.in_flight):
            return
        if len(self.in_flight) >= self.coord.settings.max_copies:
            return
        chosen = place(
            blob.blob_id, blob.size, nodes, replicas=1, exclude=blob.replicas, min_replicas=0
        )
        if not chosen:
            return
        target = next(node for node in nodes if node.node_id == chosen[0])
        task = CopyTask(
            blob_id=blob.blob_id,
            size=blob.size,
            source=ARCHIVE,
            target=target.node_id,
            live_before=0,
        )
        order = Replicate(
            blob_id=blob.blob_id,
            size=blob.size,
            archive_url=archive_url,
            bytes_per_second=self.coord.settings.copy_bytes_per_second,
        )
        self._start_copy(task, target, order)

    def _start_copy(self, task: CopyTask, target: NodeInfo, order: Replicate) -> None:
        self.in_flight[(task.blob_id, task.target)] = task
        self._spawn(self._copy(task, target, order))

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _copy(self, task: CopyTask, target: NodeInfo, order: Replicate) -> None:
        coord = self.coord
        try:
            # The plan may predate a copy that just finished to this very target (its
            # in-flight mark is dropped after the replica is recorded): nothing to do.
            async with coord.engine.connect() as conn:
                if await registry.holds(conn, task.blob_id, task.target):
                    return
            done = await coord.nodes.replicate(target.url, order)
            async with coord.engine.begin() as conn:
                await registry.add_replica(conn, task.blob_id, task.target)
                await catalog.finish_restore(conn, task.blob_id)
            coord.metrics.bytes_copied.inc(done.copied_bytes)
            coord.metrics.copies.labels("ok").inc()
            log.info(
                "copied",
                extra={"blob_id": task.blob_id, "source": task.source, "target": task.target},
            )
        except Exception as exc:
            if isinstance(exc, NodeCallFailed) and exc.status == 507:
                coord.refusals.refused(target, coord.now())  # the target, not the source
            else:
                self.failed[(task.blob_id, task.source)] = coord.now() + FAILED_SOURCE_SECONDS
            coord.metrics.copies.labels("failed").inc()
            log.warning(
                "copy failed: %s", exc, extra={"blob_id": task.blob_id, "target": task.target}
            )
        finally:
            self.in_flight.pop((task.blob_id, task.target), None)
            coord.metrics.copies_in_flight.set(len(self.in_flight))

    async def _trim(self, blob_id: str, node_id: str, url: str) -> None:
        try:
            await self.coord.nodes.delete(url, blob_id)
            async with self.coord.engine.begin() as conn:
                await registry.drop_replica(conn, blob_id, node_id)
            self.coord.metrics.deletes.labels("trim").inc()
        except Exception as exc:
            log.warning("trim failed: %s", exc, extra={"blob_id": blob_id, "node": node_id})
        finally:
            self.trimming.discard((blob_id, node_id))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

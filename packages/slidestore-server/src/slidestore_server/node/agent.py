"""The cluster agent: registers the node with the coordinator and keeps it informed.

One loop: scan the blob store (when something changed, and every
:data:`FULL_SCAN_SECONDS` anyway), then register (full inventory) or heartbeat (the
delta since the last acknowledged message), then wait for the heartbeat interval or a
change signal, whichever comes first. A failed message is not acknowledged, so its
changes go out again with the next one; a 404 from a heartbeat means the coordinator
forgot us, and the next message is a full registration. Nothing the coordinator does
(down, slow, wrong answers) stops the loop: it retries with capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import msgspec

from slidestore import errors
from slidestore.blobs import BlobStore, is_blob_id
from slidestore.client.auth import MintedTokens
from slidestore.client.http import Transport
from slidestore.cluster.inventory import InventoryTracker, Snapshot
from slidestore.cluster.wire import (
    API,
    Heartbeat,
    HeartbeatAck,
    LedgerUpdate,
    NodeReport,
    Register,
    RegisterAck,
)
from slidestore.errors import BlobNotFound
from slidestore.tokens import Operation
from slidestore_server.node.access import AccessLog
from slidestore_server.node.agent_status import AgentStatus, write_status
from slidestore_server.node.capacity import Capacity
from slidestore_server.node.changes import ChangeSignal
from slidestore_server.node.ledger import Ledger
from slidestore_server.settings import NodeSettings

FULL_SCAN_SECONDS: Final = 30.0
"""Rescan even without a signal, for changes made behind the node's back."""
BACKOFF_MIN: Final = 0.2
BACKOFF_MAX: Final = 5.0
TIMEOUT: Final = 5.0
log = logging.getLogger("slidestore.agent")


class CoordinatorRefused(Exception):
    """The coordinator answered, but not with what the protocol promises."""


class NodeForgotten(Exception):
    """404 (``node_unknown``) on a heartbeat: the coordinator does not know this node (any
    more)."""


class ClusterAgent:
    def __init__(
        self,
        *,
        settings: NodeSettings,
        node_id: str,
        blobs: BlobStore,
        capacity: Capacity,
        changes: ChangeSignal,
        on_deleted: Callable[[list[str]], Awaitable[None]] | None = None,
        access: AccessLog | None = None,
    ) -> None:
        """``on_deleted``: called on the event loop after copies of blobs the coordinator
        announced as deleted were removed here (drop open slides, renditions)."""
        assert settings.coordinator_url
        self.settings = settings
        self.node_id = node_id
        self.blobs = blobs
        self.capacity = capacity
        self.changes = changes
        self.tracker = InventoryTracker()
        self.status = AgentStatus(pid=os.getpid(), heartbeat_interval=settings.heartbeat_interval)
        self._sizes: dict[str, int] = {}
        self._snapshot: Snapshot | None = None
        self._scanned_at = 0.0
        self.ledger = Ledger(settings.data_dir / "ledger")
        self.ledger_seq = 0
        """The coordinator's ledger cursor as of the last update stored (ledger.py)."""
        self.on_deleted = on_deleted
        self.access = access

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        await self._write_status()
        backoff = BACKOFF_MIN
        # The SDK's transport (its error mapping too), with a ``node`` token per message;
        # no retries of its own: this loop backs off.
        client = Transport(
            str(self.settings.coordinator_url),
            MintedTokens(self.settings.secret, self.node_id, {Operation.NODE}, ttl=60),
            timeout=TIMEOUT,
            retries=0,
            headers={"User-Agent": f"slidestore-node/{self.node_id} pid={os.getpid()}"},
        )
        try:
            while True:
                try:
                    await self._exchange(client)
                except NodeForgotten:
                    log.info("coordinator forgot this node: registering again")
                    self.tracker.forget()
                    self.ledger_seq = 0
                    continue
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # never let the coordinator take the node down
                    await self._failed(exc)
                    await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                backoff = BACKOFF_MIN
                await self.changes.wait(self.status.heartbeat_interval)
        finally:
            await client.aclose()

    async def _exchange(self, client: Transport) -> None:
        snapshot = await self._current()
        if self.tracker.registered:
            await self._heartbeat(client, snapshot)
        else:
            await self._register(client, snapshot)
        self.tracker.acknowledge(snapshot)
        self.status.last_success = time.time()
        self.status.last_error = None
        await self._write_status()

    async def _current(self) -> Snapshot:
        """The latest scan, rescanning first if something changed or it is old."""
        pending = self.changes.pending()
        if (
            self._snapshot is None
            or pending
            or time.monotonic() - self._scanned_at > FULL_SCAN_SECONDS
        ):
            self.changes.clear()  # before the scan: a change during it wakes us again
            self._snapshot = await asyncio.to_thread(self._scan)
            self._scanned_at = time.monotonic()
        return self._snapshot

    # -- messages ----------------------------------------------------------------------

    async def _register(self, client: Transport, snapshot: Snapshot) -> None:
        policies = await asyncio.to_thread(self.ledger.policies, snapshot.blobs)
        tombstones = await asyncio.to_thread(self.ledger.tombstones)
        message = Register(
            node_id=self.node_id,
            url=self.settings.url,
            zone=self.settings.zone,
            report=await asyncio.to_thread(self._report, snapshot),
            inventory=snapshot.inventory(),
            quarantined=tuple(sorted(snapshot.quarantined)),
            policies=policies,
            tombstones=tombstones,
        )
        ack = await self._post(client, f"{API}/nodes/register", message, RegisterAck)
        if ack.heartbeat_interval > 0:
            self.status.heartbeat_interval = ack.heartbeat_interval
        await asyncio.to_thread(self.ledger.set_tombstone_seconds, ack.tombstone_seconds)
        self.ledger_seq = 0
        await self._keep(ack.ledger, snapshot)
        self.status.registered = True
        log.info(
            "registered with coordinator",
            extra={"node_id": self.node_id, "blobs": len(snapshot.blobs)},
        )

    async def _heartbeat(self, client: Transport, snapshot: Snapshot) -> None:
        delta = self.tracker.delta(snapshot)
        accessed = await asyncio.to_thread(self.access.collect) if self.access else set()
        message = Heartbeat(
            report=await asyncio.to_thread(self._report, snapshot),
            added=delta.added,
            removed=delta.removed,
            quarantined=delta.quarantined,
            ledger_seq=self.ledger_seq,
            accessed=tuple(sorted(accessed)),
        )
        try:
            ack = await self._post(
                client, f"{API}/nodes/{self.node_id}/heartbeat", message, HeartbeatAck
            )
        except BaseException as exc:
            if self.access is not None:
                self.access.give_back(accessed)  # sent with the next heartbeat
            # 404: node_unknown (or a coordinator without this route): register again.
            if not isinstance(exc, errors.SlidestoreError) or exc.status != 404:
                raise
            self.status.registered = False
            raise NodeForgotten() from None
        await self._keep(ack.ledger, snapshot)

    async def _keep(self, update: LedgerUpdate | None, snapshot: Snapshot) -> None:
        """Store what the coordinator sent for a rebuild; remove copies it says are deleted
        (holders that were down or frozen when the blob was deleted learn it here).

        Only copies the answered message reported: one that appeared since (the same
        content uploaded again just now) is reported next, and the coordinator decides."""
        if update is None:
            return
        buried = await asyncio.to_thread(self.ledger.keep, update)
        buried = [blob_id for blob_id in buried if blob_id in snapshot.blobs]
        removed = await asyncio.to_thread(self._remove, buried)
        self.ledger_seq = update.seq
        if removed:
            log.info("deleted copies of deleted blobs", extra={"blobs": len(removed)})
            if self.on_deleted is not None:
                await self.on_deleted(removed)
            self.changes.notify()

    def _remove(self, blob_ids: list[str]) -> list[str]:
        removed = []
        for blob_id in blob_ids:
            try:
                self.blobs.delete(blob_id)
            except BlobNotFound:
                continue
            removed.append(blob_id)
        return removed

    @staticmethod
    async def _post[T](client: Transport, path: str, message: msgspec.Struct, kind: type[T]) -> T:
        """One message; an error answer raises the SDK's named error for it."""
        answer = await client.coordinator(
            "POST", path, content=msgspec.json.encode(message), ok=(200, 201)
        )
        try:
            return msgspec.json.decode(answer.content, type=kind)
        except msgspec.DecodeError as exc:
            raise CoordinatorRefused(f"{path}: unexpected body: {exc}") from None

    def _report(self, snapshot: Snapshot) -> NodeReport:
        """In a worker thread: the promised bytes are read from the upload sessions' state."""
        return self.capacity.report(
            self.blobs.root,
            used=snapshot.used_bytes,
            reserve=self.settings.reserve_bytes,
            promised=self.blobs.space.promised_bytes,
        )

    # -- disk --------------------------------------------------------------------------

    def _scan(self) -> Snapshot:
        """Every healthy blob with its size, and the quarantined ids: O(blobs), in a thread.

        Sizes are cached: a blob's content (so its size) never changes under its id.
        """
        sizes: dict[str, int] = {}
        for blob_id in self.blobs.ids():
            size = self._sizes.get(blob_id)
            if size is None:
                try:
                    size = self.blobs.size(blob_id)
                except FileNotFoundError:
                    continue  # deleted while we walk
            sizes[blob_id] = size
        self._sizes = sizes
        return Snapshot.take(sizes, quarantined_ids(self.blobs.quarantine_dir))

    # -- status ------------------------------------------------------------------------

    async def _failed(self, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if reason != self.status.last_error:
            log.warning("coordinator exchange failed", extra={"reason": reason})
        self.status.last_error = reason
        await self._write_status()

    async def _write_status(self) -> None:
        # On a worker thread: creating and renaming a file waits for the disk's journal,
        # and while a repair writes hundreds of MB/s that held the event loop (and every
        # tile request) for up to a second.
        status = msgspec.structs.replace(self.status)
        try:
            await asyncio.to_thread(write_status, self.settings.data_dir, status)
        except OSError as exc:
            log.warning("cannot write agent status", extra={"reason": str(exc)})


def quarantined_ids(quarantine_dir: Path) -> set[str]:
    """Ids of quarantined copies (files are named ``<id>.<unix ns>``)."""
    ids: set[str] = set()
    with os.scandir(quarantine_dir) as entries:
        for entry in entries:
            blob_id = entry.name.partition(".")[0]
            if is_blob_id(blob_id):
                ids.add(blob_id)
    return ids

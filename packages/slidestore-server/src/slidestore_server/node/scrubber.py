"""Re-hashing every blob now and then, so silent disk corruption is found and repaired.

``BlobStore.scrub`` does the work (and the quarantining); this module paces it, runs it
on a worker thread so the event loop keeps serving tiles, and tells the cluster agent
about every quarantined blob. A pass in progress stops at the next 1 MiB chunk when the
node shuts down, instead of holding up the exit for minutes on a 25 GB blob.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from slidestore.blobs import BlobStore
from slidestore.blobs.scrub import Throttle

log = logging.getLogger("slidestore.scrub")


class ScrubStopped(Exception):
    pass


class _StoppableThrottle(Throttle):
    def __init__(self, bytes_per_second: float | None, stop: threading.Event) -> None:
        super().__init__(bytes_per_second)
        self._stop = stop

    def account(self, nbytes: int) -> None:
        if self._stop.is_set():
            raise ScrubStopped()
        super().account(nbytes)


class Scrubber:
    def __init__(
        self,
        blobs: BlobStore,
        *,
        bytes_per_second: float,
        interval_seconds: float,
        on_quarantine: Callable[[list[str]], None],
    ) -> None:
        self.blobs = blobs
        self.bytes_per_second = bytes_per_second
        self.interval_seconds = interval_seconds
        self.on_quarantine = on_quarantine
        """Called on the event loop with the ids a pass quarantined (if any)."""
        self._stop = threading.Event()

    @property
    def enabled(self) -> bool:
        return self.bytes_per_second > 0 and self.interval_seconds > 0

    async def run_pass(self, *, throttled: bool = True) -> list[str]:
        """One pass over every blob; returns the ids it quarantined."""
        rate = self.bytes_per_second if throttled and self.bytes_per_second > 0 else None
        throttle = _StoppableThrottle(rate, self._stop)
        try:
            bad = await asyncio.to_thread(lambda: list(self.blobs.scrub(throttle=throttle)))
        except ScrubStopped:
            return []
        if bad:
            log.warning("scrub quarantined blobs", extra={"blob_ids": bad})
            self.on_quarantine(bad)
        return bad

    async def run(self) -> None:
        """Forever: wait an interval, scrub everything (the first pass one interval after
        start, so a restarting node does not re-read its whole disk each time)."""
        while True:
            await asyncio.sleep(self.interval_seconds)
            try:
                await self.run_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scrub pass failed")

    def stop(self) -> None:
        self._stop.set()

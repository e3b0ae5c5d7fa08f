"""Telling the cluster agent that the blobs changed, from any worker process.

A commit, delete, replica or quarantine calls :meth:`ChangeSignal.notify`. In the agent's
own process that sets an ``asyncio.Event`` (the heartbeat leaves within milliseconds).
Other workers cannot reach that event, so ``notify`` also appends a byte to
``data_dir/changes`` and the agent polls that file's size and mtime every
:data:`POLL_SECONDS` — one ``stat``, cheap enough to do ten times a second. The signal only
says *that* something changed; the agent learns *what* by scanning the blob store, so a
lost or coalesced signal can delay a report but never drop one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Final

CHANGES_FILE: Final = "changes"
POLL_SECONDS: Final = 0.1
_TRUNCATE_AT: Final = 1 << 20


class ChangeSignal:
    def __init__(self, data_dir: Path, *, enabled: bool) -> None:
        self.path = data_dir / CHANGES_FILE
        self.enabled = enabled
        """False when no coordinator is configured: nobody listens, so nothing is written."""
        self._event = asyncio.Event()
        self._seen = self._mark()

    def notify(self) -> None:
        """Call from the event loop thread after the change is on disk."""
        if not self.enabled:
            return
        self._event.set()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, b".")
            finally:
                os.close(fd)
        except OSError:
            pass  # the agent's periodic rescan still finds the change

    def clear(self) -> None:
        """Forget signals so far; call *before* scanning, so a change during the scan
        triggers another round instead of being missed."""
        self._event.clear()
        self._seen = self._mark()
        if self._seen[0] > _TRUNCATE_AT:
            with contextlib.suppress(OSError):  # the size change just wakes us once more
                os.truncate(self.path, 0)

    def pending(self) -> bool:
        return self._event.is_set() or self._mark() != self._seen

    async def wait(self, timeout: float) -> bool:
        """Until a change is signalled (True) or ``timeout`` passes (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.pending():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), min(remaining, POLL_SECONDS))
        return True

    def _mark(self) -> tuple[int, int]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return (0, 0)
        return (st.st_size, st.st_mtime_ns)

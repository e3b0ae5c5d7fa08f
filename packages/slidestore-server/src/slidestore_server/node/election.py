"""One cluster agent per node, however many worker processes serve it.

The worker that holds an exclusive ``flock`` on ``data_dir/agent.lock`` runs the agent
and the scrubber. The kernel drops the lock when its holder dies, and the other workers
keep trying, so a replacement takes over within :data:`RETRY_SECONDS` of a crash.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Final

LOCK_FILE: Final = "agent.lock"
RETRY_SECONDS: Final = 2.0


class AgentLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        # The holder's pid, for operators and tests (the lock itself is what counts).
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock
